import t from 'tap'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { build } from '../helpers/build.ts'
import { createUser, defaultPassword } from '../helpers/users.ts'

// SR-9 / SR-10: attempts count before the password is hashed, so a parallel burst
// cannot be checked in full before its failures count; and every spelling of one
// phone number shares one bucket.
const loginUrl = '/api/v1/auth/login-with-password'
const tokenUrl = '/api/v1/token'
const threshold = 5
// Per-IP and per-identifier limits out of the way: only the lockout is under test.
const lockoutOnly = { LOGIN_LOCKOUT_THRESHOLD: String(threshold), AUTH_RATE_LIMIT_PER_IP: '1000', AUTH_RATE_LIMIT_PER_IDENTIFIER: '1000', RATE_LIMIT_MAX: '1000' }

const count = (responses: LightMyRequestResponse[], status: number) => responses.filter((r) => r.statusCode === status).length

/** 15 wrong passwords and the right one, all sent at once, each from its own address. */
function burst (app: FastifyInstance, send: (password: string, ip: string) => Promise<LightMyRequestResponse>) {
  const passwords = [...Array.from({ length: 15 }, (_, i) => `wrong password ${i}`), defaultPassword]
  return Promise.all(passwords.map((password, i) => send(password, `10.9.0.${i + 1}`)))
}

t.test('SR-9: 15 wrong + 1 right parallel logins: at most threshold + 1 are checked, the rest 429', async (t) => {
  const app = await build(t, lockoutOnly)
  const victim = await createUser(app, { email: 'race-victim@example.com' })
  const verifiesBefore = app.passwords.tasks.verify
  const responses = await burst(app, (password, ip) => app.inject({ method: 'POST', url: loginUrl, remoteAddress: ip, payload: { identifier: victim.email!, password } }))
  const checked = app.passwords.tasks.verify - verifiesBefore
  t.ok(checked <= threshold + 1, `${checked} passwords were hashed`)
  t.ok(count(responses, 200) <= 1)
  t.equal(count(responses, 401) + count(responses, 200), checked, 'each checked attempt has its own answer')
  t.equal(count(responses, 429), responses.length - checked, 'every other attempt is refused unchecked')
  t.ok(count(responses, 429) >= responses.length - (threshold + 1))
  for (const refused of responses.filter((r) => r.statusCode === 429)) {
    t.equal(refused.json().error.code, 'AUTH_ACCOUNT_LOCKED')
    t.ok(Number(refused.headers['retry-after']) > 0, 'with Retry-After')
  }
  if (count(responses, 200) === 0) {
    const after = await app.inject({ method: 'POST', url: loginUrl, payload: { identifier: victim.email!, password: defaultPassword } })
    t.equal(after.statusCode, 429, 'the account stays locked after the burst')
  }
})

t.test('SR-9: the same race on the OAuth2 password grant (P/token)', async (t) => {
  const app = await build(t, lockoutOnly)
  const victim = await createUser(app, { email: 'token-race@example.com' })
  const verifiesBefore = app.passwords.tasks.verify
  const responses = await burst(app, (password, ip) => app.inject({
    method: 'POST',
    url: tokenUrl,
    remoteAddress: ip,
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: new URLSearchParams({ grant_type: 'password', username: victim.email!, password }).toString()
  }))
  const checked = app.passwords.tasks.verify - verifiesBefore
  t.ok(checked <= threshold + 1, `${checked} passwords were hashed`)
  t.equal(count(responses, 429), responses.length - checked)
  t.ok(count(responses, 429) >= responses.length - (threshold + 1))
  for (const refused of responses.filter((r) => r.statusCode === 429)) t.equal(refused.json().error, 'invalid_grant')
})

t.test('SR-9: a burst on the current password (change-password) counts on the same lock', async (t) => {
  const app = await build(t, lockoutOnly)
  const victim = await createUser(app, { email: 'reauth-race@example.com' })
  const login = await app.inject({ method: 'POST', url: loginUrl, payload: { identifier: victim.email!, password: defaultPassword } })
  const headers = { authorization: `Bearer ${login.json().data.access_token}` }
  const verifiesBefore = app.passwords.tasks.verify
  const responses = await Promise.all(Array.from({ length: 15 }, (_, i) => app.inject({
    method: 'POST',
    url: '/api/v1/auth/change-password',
    remoteAddress: `10.9.1.${i + 1}`,
    headers,
    payload: { current_password: `wrong password ${i}`, new_password: 'a brand new passphrase' }
  })))
  const checked = app.passwords.tasks.verify - verifiesBefore
  t.ok(checked <= threshold + 1, `${checked} passwords were hashed`)
  t.ok(count(responses, 429) >= responses.length - (threshold + 1), responses.map((r) => r.statusCode).join(','))
})

t.test('SR-9: a right password ends the run of failures; the lock still comes after threshold more', async (t) => {
  const app = await build(t, lockoutOnly)
  const u = await createUser(app, { email: 'run@example.com' })
  const attempt = (password: string) => app.inject({ method: 'POST', url: loginUrl, payload: { identifier: u.email!, password } })
  for (let i = 0; i < threshold - 1; i++) t.equal((await attempt(`wrong ${i} password`)).statusCode, 401)
  t.equal((await attempt(defaultPassword)).statusCode, 200)
  for (let i = 0; i < threshold; i++) t.equal((await attempt(`wrong again ${i}`)).statusCode, 401, 'counted from zero again')
  t.equal((await attempt(defaultPassword)).statusCode, 429, 'locked after threshold consecutive failures')
})

// Twenty spellings of +1 415 555 0123 that libphonenumber-js reads as one number.
const formats = [
  '+1 415 555 0123', '+1-415-555-0123', '1 415 555 0123', '+14155550123', '14155550123',
  '+1 (415) 555-0123', '1 (415) 555-0123', '+1.415.555.0123', '1.415.555.0123', '+1 415.555.0123',
  '1-415-555-0123', '+1(415)555-0123', '+1 4155550123', '1 4155550123', '+1  415  555  0123',
  ' +1 415 555 0123 ', '+1 415 555 01 23', '+1 41 55 55 01 23', '1 (415)555-0123', '+1-415-5550123'
]

t.test('SR-10: 20 formats of one phone number share one per-identifier bucket', async (t) => {
  t.equal(new Set(formats).size, 20)
  const limit = 5
  const app = await build(t, { LOGIN_LOCKOUT_THRESHOLD: '100', AUTH_RATE_LIMIT_PER_IDENTIFIER: String(limit), AUTH_RATE_LIMIT_PER_IP: '1000', RATE_LIMIT_MAX: '1000' })
  for (const [label, phone] of [['a registered number', '+14155550123'], ['an unknown number', '+14155550199']]) {
    if (label === 'a registered number') await createUser(app, { phone_number: phone })
    const spellings = formats.map((f) => f.replace('0123', phone.slice(-4)).replace('01 23', `${phone.slice(-4, -2)} ${phone.slice(-2)}`))
    const verifiesBefore = app.passwords.tasks.verify
    const statuses: number[] = []
    for (const [i, identifier] of spellings.entries()) {
      const res = await app.inject({ method: 'POST', url: loginUrl, remoteAddress: `10.8.${label.length}.${i + 1}`, payload: { identifier, password: `guess number ${i}` } })
      statuses.push(res.statusCode)
      if (res.statusCode === 429) t.equal(res.json().error.code, 'RATE_LIMITED')
    }
    t.same(statuses, [...Array(limit).fill(401), ...Array(20 - limit).fill(429)], `${label}: one bucket`)
    t.equal(app.passwords.tasks.verify - verifiesBefore, limit, `${label}: only ${limit} guesses were hashed`)
  }
})

t.test('SR-10: spellings of one email (case, spaces) share one bucket', async (t) => {
  const app = await build(t, { LOGIN_LOCKOUT_THRESHOLD: '100', AUTH_RATE_LIMIT_PER_IDENTIFIER: '2', AUTH_RATE_LIMIT_PER_IP: '1000' })
  const statuses = []
  for (const identifier of ['Someone@Example.com', 'someone@example.com', ' SOMEONE@EXAMPLE.COM ']) {
    statuses.push((await app.inject({ method: 'POST', url: loginUrl, payload: { identifier, password: 'some guess here' } })).statusCode)
  }
  t.same(statuses, [401, 401, 429])
})
