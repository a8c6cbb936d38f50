import t from 'tap'
import { createSigner } from 'fast-jwt'
import { eq } from 'drizzle-orm'
import { session } from '../../db/schema/index.ts'
import { generateKeyPairSync } from 'node:crypto'
import { build, testSecret } from '../helpers/build.ts'
import { signAs } from '../helpers/tokens.ts'
import { bearer, createUser, login } from '../helpers/users.ts'

const protectedUrl = '/api/v1/settings/profile'
const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')

// Both signatures: a key pair (the default, forged with the app's own private key) and HS256.
for (const algorithm of ['EdDSA', 'HS256'] as const) {
  t.test(`SR-17: every forged, expired or misused token is a 401 (${algorithm})`, async (t) => {
    const app = await build(t, { JWT_ALGORITHM: algorithm })
    const u = await createUser(app)
    const tokens = await login(app, u.email!)
    const claims = JSON.parse(Buffer.from(tokens.access_token.split('.')[1], 'base64url').toString())
    const now = Math.floor(Date.now() / 1000)
    const signWith = (key: string, payload: Record<string, unknown>) => key === testSecret ? signAs(app, payload) : createSigner({ key, algorithm: 'HS256' })(payload)
    const kid = app.signingKeys.current()?.kid
    const otherKey = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }) as string

    t.equal((await app.inject({ url: protectedUrl, headers: bearer(tokens.access_token) })).statusCode, 200, 'the genuine token works')

    const cases: Record<string, string> = {
      'alg none': `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.`,
      'wrong key': kid === undefined ? signWith('another-secret-of-at-least-thirty-two-chars', claims) : createSigner({ key: otherKey, algorithm: 'EdDSA', kid })(claims),
      'edited payload, the signature of the genuine token (which the verifier has cached)': `${tokens.access_token.split('.')[0]}.${b64({ ...claims, sub: '00000000-0000-4000-8000-000000000000' })}.${tokens.access_token.split('.')[2]}`,
      expired: signWith(testSecret, { ...claims, iat: now - 7200, exp: now - 3600 }),
      'wrong iss': signWith(testSecret, { ...claims, iss: 'someone-else' }),
      'wrong aud': signWith(testSecret, { ...claims, aud: 'another-api' }),
      'wrong type': signWith(testSecret, { ...claims, type: 'refresh' }),
      'missing sid': signWith(testSecret, { ...claims, sid: undefined }),
      'refresh token as credential': tokens.refresh_token,
      garbage: 'not-a-token'
    }
    for (const [name, token] of Object.entries(cases)) {
      const res = await app.inject({ url: protectedUrl, headers: bearer(token) })
      t.equal(res.statusCode, 401, name)
      t.match(res.json().error.code, /^AUTH_/, name)
    }
    const expired = await app.inject({ url: protectedUrl, headers: bearer(cases.expired) })
    t.equal(expired.json().error.code, 'AUTH_TOKEN_EXPIRED')

    const inQuery = await app.inject({ url: `${protectedUrl}?access_token=${tokens.access_token}` })
    t.equal(inQuery.statusCode, 401, 'a token in the query string is refused')
    const inQueryToo = await app.inject({ url: `${protectedUrl}?token=${tokens.access_token}`, headers: bearer(tokens.access_token) })
    t.equal(inQueryToo.statusCode, 401, 'even next to a valid header')

    const accessAsSessionHeader = await app.inject({ url: protectedUrl, headers: { 'x-session-token': tokens.access_token } })
    t.equal(accessAsSessionHeader.statusCode, 401, 'X-Session-Token takes session tokens only')
    t.equal((await app.inject({ url: protectedUrl, headers: { authorization: `Basic ${tokens.access_token}` } })).statusCode, 401, 'not a Bearer scheme')
  })
}

t.test('session tokens work from Authorization and X-Session-Token; access tokens from Authorization', async (t) => {
  const app = await build(t)
  const u = await createUser(app)
  const tokens = await login(app, u.email!)
  for (const headers of [bearer(tokens.session_token), { 'x-session-token': tokens.session_token }, bearer(tokens.access_token)]) {
    const res = await app.inject({ url: protectedUrl, headers })
    t.equal(res.statusCode, 200)
    t.equal(res.json().data.user_id, u.user_id)
    t.notOk('password' in res.json().data)
  }
  t.equal((await app.inject({ url: protectedUrl })).statusCode, 401)
})

t.test('token-info describes the presented token and its session', async (t) => {
  const app = await build(t)
  const u = await createUser(app)
  const tokens = await login(app, u.email!)
  const info = await app.inject({ url: '/api/v1/auth/token-info', headers: bearer(tokens.access_token) })
  t.equal(info.statusCode, 200)
  const data = info.json().data
  t.equal(data.active, true)
  t.equal(data.token_type, 'access')
  t.equal(data.session_id, tokens.session_id)
  t.ok(Date.parse(data.expires_at) > Date.now())
  t.ok(Date.parse(data.session_expires_at) > Date.parse(data.expires_at))
  t.ok(Date.parse(data.refresh_idle_expires_at) <= Date.parse(data.session_expires_at))
  t.ok(data.permissions.includes('view_profile'))

  const viaPost = await app.inject({ method: 'POST', url: '/api/v1/auth/token-info', headers: bearer(tokens.access_token), payload: { token: tokens.refresh_token } })
  t.equal(viaPost.json().data.token_type, 'refresh')
  t.equal(viaPost.json().data.active, true)
  const other = await createUser(app)
  const otherTokens = await login(app, other.email!)
  const foreign = await app.inject({ method: 'POST', url: '/api/v1/auth/token-info', headers: bearer(tokens.access_token), payload: { token: otherTokens.session_token } })
  t.same(foreign.json().data, { active: false }, 'nobody inspects another user\'s token')
})

t.test('token-info on a token of an ended session: inactive, whether revoked or expired', async (t) => {
  const app = await build(t)
  const u = await createUser(app)
  const current = await login(app, u.email!)
  const revoked = await login(app, u.email!)
  const expired = await login(app, u.email!)
  const inspect = (token: string) => app.inject({ method: 'POST', url: '/api/v1/auth/token-info', headers: bearer(current.access_token), payload: { token } })

  t.equal((await inspect(revoked.refresh_token)).json().data.active, true, 'active before')
  const del = await app.inject({ method: 'DELETE', url: `/api/v1/auth/sessions/${revoked.session_id}`, headers: bearer(current.access_token) })
  t.equal(del.statusCode, 200, 'one\'s own session is found and revoked')
  t.same((await inspect(revoked.refresh_token)).json().data, { active: false }, 'revoked: its refresh token is inactive')
  const again = await app.inject({ method: 'DELETE', url: `/api/v1/auth/sessions/${revoked.session_id}`, headers: bearer(current.access_token) })
  t.equal(again.statusCode, 404, 'a revoked session is no longer an active one')

  await app.db.update(session).set({ expires_at: new Date(Date.now() - 1000) }).where(eq(session.session_id, expired.session_id))
  t.same((await inspect(expired.refresh_token)).json().data, { active: false }, 'expired: inactive')
  const own = (await app.inject({ url: '/api/v1/auth/token-info', headers: bearer(current.access_token) })).json().data
  t.equal(own.active, true, 'the caller\'s own session is untouched')
  t.equal(own.session_id, current.session_id)
})
