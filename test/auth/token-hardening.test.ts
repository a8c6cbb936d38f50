import t from 'tap'
import { build } from '../helpers/build.ts'
import { signAs } from '../helpers/tokens.ts'
import { bearer, createUser, login } from '../helpers/users.ts'

const api = '/api/v1'
const protectedUrl = `${api}/settings/profile`
const claimsOf = (token: string) => JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString()) as Record<string, unknown>

// Both signatures: a key pair (the default, forged with the app's own private key) and HS256.
for (const algorithm of ['EdDSA', 'HS256'] as const) {
  t.test(`SR-17: tokens without iss or aud, with an aud array or a future iat are refused (${algorithm})`, async (t) => {
    const app = await build(t, { JWT_ALGORITHM: algorithm })
    const signWith = (payload: Record<string, unknown>) => signAs(app, payload)
    const u = await createUser(app)
    const tokens = await login(app, u.email!)
    const claims = claimsOf(tokens.access_token)
    const now = Math.floor(Date.now() / 1000)

    const control = signWith({ ...claims, jti: 'control-token' })
    t.equal((await app.inject({ url: protectedUrl, headers: bearer(control) })).statusCode, 200, 're-signed genuine claims are accepted')

    const cases: Record<string, string> = {
      'no iss': signWith({ ...claims, iss: undefined }),
      'no aud': signWith({ ...claims, aud: undefined }),
      'neither iss nor aud': signWith({ ...claims, iss: undefined, aud: undefined }),
      'aud array holding ours': signWith({ ...claims, aud: [claims.aud, 'another-api'] }),
      'aud array of ours alone': signWith({ ...claims, aud: [claims.aud] }),
      'iat an hour ahead': signWith({ ...claims, iat: now + 3600, exp: now + 7200 })
    }
    for (const [name, token] of Object.entries(cases)) {
      const res = await app.inject({ url: protectedUrl, headers: bearer(token) })
      t.equal(res.statusCode, 401, name)
      t.equal(res.json().error.code, 'AUTH_INVALID_TOKEN', name)
      const info = await app.inject({ method: 'POST', url: `${api}/auth/token-info`, headers: bearer(tokens.access_token), payload: { token } })
      t.same(info.json().data, { active: false }, `${name}: token-info calls it inactive`)
    }
  })
}

t.test('SR-18: token-info reports a refresh token with a wrong MAC as inactive', async (t) => {
  const app = await build(t)
  const u = await createUser(app)
  const tokens = await login(app, u.email!)
  const headers = bearer(tokens.access_token)
  const info = (token: string) => app.inject({ method: 'POST', url: `${api}/auth/token-info`, headers, payload: { token } })
  const genuine = await info(tokens.refresh_token)
  t.match(genuine.json().data, { active: true, token_type: 'refresh', session_id: tokens.session_id })
  const [sid, generation, mac] = tokens.refresh_token.split('.')
  const forged = [
    `${sid}.${generation}.x`,
    `${sid}.${generation}.${mac.slice(0, -2)}AA`,
    `${sid}.${generation}.${'A'.repeat(mac.length)}`
  ]
  for (const token of forged) t.same((await info(token)).json().data, { active: false }, token.slice(-8))
})

t.test('SR-10: bogus refresh tokens naming a session do not lock its owner out', async (t) => {
  const limit = 3
  const app = await build(t, { AUTH_RATE_LIMIT_PER_IDENTIFIER: String(limit), AUTH_RATE_LIMIT_PER_IP: '1000', RATE_LIMIT_MAX: '1000' })
  const u = await createUser(app)
  const tokens = await login(app, u.email!)
  const refresh = (token: string, ip = '10.7.0.1') => app.inject({ method: 'POST', url: `${api}/auth/refresh-token`, remoteAddress: ip, payload: { refresh_token: token } })
  const sid = tokens.session_id
  for (let i = 0; i < 10; i++) {
    const bogus = await refresh(`${sid}.0.x${i}`, '10.7.0.66')
    t.equal(bogus.statusCode, 401, 'a forged token is refused')
  }
  const owner = await refresh(tokens.refresh_token, '10.7.0.2')
  t.equal(owner.statusCode, 200, 'the owner still refreshes')

  // The per-session limit still holds for tokens that prove the session.
  let current = owner.json().data.refresh_token as string
  const statuses = [200]
  for (let i = 0; i < limit; i++) {
    const res = await refresh(current, '10.7.0.2')
    statuses.push(res.statusCode)
    if (res.statusCode === 200) current = res.json().data.refresh_token
    else t.equal(res.json().error.code, 'RATE_LIMITED')
  }
  t.same(statuses, [...Array(limit).fill(200), 429], 'a real session is limited per session')
})
