import t from 'tap'
import bcrypt from 'bcryptjs'
import { and, eq } from 'drizzle-orm'
import type { FastifyInstance } from 'fastify'
import { build } from '../helpers/build.ts'
import { createUser, defaultPassword } from '../helpers/users.ts'
import { activityLog, session, user } from '../../db/schema/index.ts'

const loginUrl = '/api/v1/auth/login-with-password'

// One app for the tests that need no special settings: each creates its own users.
let shared: FastifyInstance | undefined
const app0 = async () => (shared ??= await build(t))

t.test('password login by email, phone or user name returns the token bundle', async (t) => {
  const app = await app0()
  const u = await createUser(app, { email: 'Ada@Example.com', phone_number: '+14155550123', user_name: 'ada_l' })
  for (const identifier of ['ada@example.com', 'ADA@EXAMPLE.COM', '+1 415 555 0123', 'Ada_L']) {
    const res = await app.inject({ method: 'POST', url: loginUrl, payload: { identifier, password: defaultPassword } })
    t.equal(res.statusCode, 200, identifier)
    const data = res.json().data
    t.equal(data.token_type, 'bearer')
    t.equal(data.user.user_id, u.user_id)
    t.ok(data.access_token && data.session_token && data.refresh_token && data.session_id)
    t.equal(data.expires_in, 3600)
    t.notOk('password' in data.user, 'no password hash in the response')
    t.equal(res.headers['cache-control'], 'no-store', 'SR-31: auth responses are not cached')
  }
  const legacy = await app.inject({ method: 'POST', url: loginUrl, payload: { email: 'ada@example.com', password: defaultPassword } })
  t.equal(legacy.statusCode, 200, 'the email field works too')
})

t.test('a login records last_login (in the answer and the row), not last_updated', async (t) => {
  const app = await app0()
  const u = await createUser(app, { email: 'last.login@example.com' })
  const [before] = await app.db.select().from(user).where(eq(user.user_id, u.user_id))
  t.equal(before.last_login, null)
  const startedAt = Date.now()
  const res = await app.inject({ method: 'POST', url: loginUrl, payload: { identifier: u.email, password: defaultPassword } })
  t.equal(res.statusCode, 200)
  const [after] = await app.db.select().from(user).where(eq(user.user_id, u.user_id))
  t.ok(after.last_login && after.last_login.getTime() >= startedAt - 1000 && after.last_login.getTime() <= Date.now() + 1000, 'the time of this login')
  t.equal(res.json().data.user.last_login, after.last_login!.toISOString(), 'the answer shows it')
  t.same(after.last_updated, before.last_updated, 'the profile did not change, so session snapshots stay current')
  const [row] = await app.db.select().from(session).where(eq(session.session_id, res.json().data.session_id))
  t.equal(row.user_id, u.user_id, 'its session row is there')
  t.equal(row.refresh_generation, 0)
  t.equal(row.expires_at.getTime() - row.created_at.getTime(), 30 * 24 * 3600 * 1000, 'expiring after REFRESH_TOKEN_EXPIRY_MINUTES')
})

t.test('SR-7: unknown identifier and wrong password answer identically, both verifying a hash', async (t) => {
  const app = await build(t)
  await createUser(app, { email: 'known@example.com' })
  const verified: Array<string | null> = []
  const original = app.passwords.verify
  app.passwords.verify = async (hash, password) => { verified.push(hash ?? null); return original(hash, password) }
  const unknown = await app.inject({ method: 'POST', url: loginUrl, payload: { identifier: 'nobody@example.com', password: 'wrong password 1' } })
  const wrong = await app.inject({ method: 'POST', url: loginUrl, payload: { identifier: 'known@example.com', password: 'wrong password 1' } })
  t.equal(unknown.statusCode, 401)
  t.equal(wrong.statusCode, unknown.statusCode)
  t.equal(wrong.json().error.code, 'AUTH_INVALID_CREDENTIALS')
  t.equal(unknown.json().error.code, wrong.json().error.code)
  t.equal(unknown.json().error.message, wrong.json().error.message)
  t.same(Object.keys(unknown.json().error).sort(), Object.keys(wrong.json().error).sort())
  t.equal(verified.length, 2, 'a hash verification ran for both (dummy hash for the unknown user)')
  t.equal(verified[0], null, 'the unknown user goes through the dummy-hash path')
})

t.test('SR-1: a too-long password is a fast 400, never a 500', async (t) => {
  const app = await app0()
  await createUser(app, { email: 'long@example.com' })
  const res = await app.inject({ method: 'POST', url: loginUrl, payload: { identifier: 'long@example.com', password: 'x'.repeat(129) } })
  t.equal(res.statusCode, 400)
  t.equal(res.json().error.code, 'PASSWORD_TOO_LONG')
  const huge = await app.inject({ method: 'POST', url: loginUrl, payload: { identifier: 'long@example.com', password: 'x'.repeat(100_000) } })
  t.equal(huge.statusCode, 400)
})

t.test('SR-3: spaces, emoji and non-Latin letters work as passwords', async (t) => {
  const app = await app0()
  for (const password of ['  spaces  inside  ', '🔐🦄🌈🍕🚀🎉🐙🌻', 'كلمة سر طويلة', '密码很长的密码吗']) {
    const u = await createUser(app, { password })
    const res = await app.inject({ method: 'POST', url: loginUrl, payload: { identifier: u.email!, password } })
    t.equal(res.statusCode, 200, JSON.stringify(password))
  }
})

t.test('SR-5: a legacy bcrypt hash logs in and is re-hashed to Argon2id', async (t) => {
  const app = await app0()
  const legacy = bcrypt.hashSync(defaultPassword, 10)
  const u = await createUser(app, { passwordHash: legacy })
  t.match(u.password, /^\$2[aby]\$/)
  const wrong = await app.inject({ method: 'POST', url: loginUrl, payload: { identifier: u.email!, password: 'not the password' } })
  t.equal(wrong.statusCode, 401)
  const [beforeRow] = await app.db.select().from(user).where(eq(user.user_id, u.user_id))
  t.equal(beforeRow.password, legacy, 'a failed login does not touch the hash')
  const ok = await app.inject({ method: 'POST', url: loginUrl, payload: { identifier: u.email!, password: defaultPassword } })
  t.equal(ok.statusCode, 200)
  const [row] = await app.db.select().from(user).where(eq(user.user_id, u.user_id))
  t.match(row.password, /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/)
  const again = await app.inject({ method: 'POST', url: loginUrl, payload: { identifier: u.email!, password: defaultPassword } })
  t.equal(again.statusCode, 200, 'the new hash verifies')
})

t.test('SR-9: five failures lock the account with a growing back-off; other accounts unaffected', async (t) => {
  const app = await build(t)
  const victim = await createUser(app, { email: 'victim@example.com' })
  await createUser(app, { email: 'bystander@example.com' })
  const attempt = (identifier: string, password: string) => app.inject({ method: 'POST', url: loginUrl, payload: { identifier, password } })
  for (let i = 0; i < 5; i++) t.equal((await attempt('victim@example.com', `wrong-${i}-password`)).statusCode, 401)
  const locked = await attempt('victim@example.com', defaultPassword)
  t.equal(locked.statusCode, 429, 'even the right password is refused while locked')
  t.equal(locked.json().error.code, 'AUTH_ACCOUNT_LOCKED')
  const first = Number(locked.headers['retry-after'])
  t.ok(first >= 25 && first <= 30, `Retry-After ${first}`)
  t.equal((await attempt('bystander@example.com', defaultPassword)).statusCode, 200, 'another account is not affected')

  // The lock expires (simulated by dropping it); the next failure locks for twice as long.
  const { keyOf } = await import('../../plugins/app/auth/throttle.ts')
  await app.store.del(`lock:${keyOf(`user:${victim.user_id}`)}`)
  t.equal((await attempt('victim@example.com', 'wrong-again-password')).statusCode, 401)
  const second = await attempt('victim@example.com', defaultPassword)
  t.equal(second.statusCode, 429)
  t.ok(Number(second.headers['retry-after']) > first, 'the back-off grows')

  await app.activity.flush()
  const rows = await app.db.select().from(activityLog).where(and(eq(activityLog.action, 'account_locked'), eq(activityLog.target_user_id, victim.user_id)))
  t.equal(rows.length, 2, 'SR-38: each lockout is audited')
})

t.test('SR-9: the back-off is capped', async (t) => {
  const app = await build(t, { LOGIN_LOCKOUT_THRESHOLD: '1', LOGIN_LOCKOUT_BASE_SECONDS: '600', LOGIN_LOCKOUT_MAX_SECONDS: '900', AUTH_RATE_LIMIT_PER_IDENTIFIER: '100' })
  const victim = await createUser(app, { email: 'capped@example.com' })
  const { keyOf } = await import('../../plugins/app/auth/throttle.ts')
  let retryAfter = 0
  for (let i = 0; i < 4; i++) {
    await app.store.del(`lock:${keyOf(`user:${victim.user_id}`)}`)
    await app.inject({ method: 'POST', url: loginUrl, payload: { identifier: 'capped@example.com', password: `bad-password-${i}` } })
    retryAfter = Number((await app.inject({ method: 'POST', url: loginUrl, payload: { identifier: 'capped@example.com', password: defaultPassword } })).headers['retry-after'])
  }
  t.ok(retryAfter <= 900 && retryAfter > 600, `capped at 900 (got ${retryAfter})`)
})

t.test('SR-10: per-identifier and per-IP limits on login', async (t) => {
  const app = await build(t, { AUTH_RATE_LIMIT_PER_IDENTIFIER: '3', AUTH_RATE_LIMIT_PER_IP: '1000', LOGIN_LOCKOUT_THRESHOLD: '100' })
  const statuses = []
  for (let i = 0; i < 4; i++) {
    statuses.push((await app.inject({ method: 'POST', url: loginUrl, remoteAddress: `10.1.0.${i + 1}`, payload: { identifier: 'target@example.com', password: 'password guess' } })).statusCode)
  }
  t.same(statuses, [401, 401, 401, 429], 'one identifier is limited across IPs')

  const perIp = await build(t, { AUTH_RATE_LIMIT_PER_IP: '3', AUTH_RATE_LIMIT_PER_IDENTIFIER: '1000' })
  const ipStatuses = []
  for (let i = 0; i < 4; i++) {
    ipStatuses.push((await perIp.inject({ method: 'POST', url: loginUrl, remoteAddress: '10.2.0.1', payload: { identifier: `someone-${i}@example.com`, password: 'password guess' } })).statusCode)
  }
  t.same(ipStatuses, [401, 401, 401, 429], 'one IP is limited across identifiers')
  const limited = await perIp.inject({ method: 'POST', url: loginUrl, remoteAddress: '10.2.0.1', payload: { identifier: 'x@example.com', password: 'password guess' } })
  t.equal(limited.json().error.code, 'RATE_LIMITED')
  t.ok(Number(limited.headers['retry-after']) > 0)
})

t.test('an inactive account cannot log in', async (t) => {
  const app = await app0()
  const u = await createUser(app, { is_active: false })
  const res = await app.inject({ method: 'POST', url: loginUrl, payload: { identifier: u.email!, password: defaultPassword } })
  t.equal(res.statusCode, 403)
  t.equal(res.json().error.code, 'AUTH_ACCOUNT_INACTIVE')
})

t.test('SR-38: login success and failure each write one audit row, without secrets', async (t) => {
  const app = await app0()
  const u = await createUser(app)
  await app.inject({ method: 'POST', url: loginUrl, payload: { identifier: u.email!, password: 'a wrong password' }, headers: { 'user-agent': 'tap-test/1.0', 'x-request-id': 'audit-failure-0001' } })
  const ok = await app.inject({ method: 'POST', url: loginUrl, payload: { identifier: u.email!, password: defaultPassword }, headers: { 'user-agent': 'tap-test/1.0', 'x-request-id': 'audit-success-0001' } })
  const sessionId = ok.json().data.session_id
  await app.activity.flush()
  const rows = await app.db.select().from(activityLog).where(eq(activityLog.target_user_id, u.user_id))
  const failed = rows.filter((r) => r.action === 'login_failed')
  const succeeded = rows.filter((r) => r.action === 'login_success')
  t.equal(failed.length, 1)
  t.equal(succeeded.length, 1)
  t.equal(succeeded[0].user_id, u.user_id)
  t.equal(succeeded[0].session_id, sessionId)
  t.equal(succeeded[0].request_id, 'audit-success-0001')
  t.equal(succeeded[0].user_agent, 'tap-test/1.0')
  t.ok(succeeded[0].ip_address)
  t.ok(succeeded[0].created_at instanceof Date)
  t.equal(failed[0].request_id, 'audit-failure-0001')
  const text = JSON.stringify(rows)
  t.notMatch(text, defaultPassword)
  t.notMatch(text, 'a wrong password')
  t.notMatch(text, ok.json().data.access_token)
  t.notMatch(text, ok.json().data.refresh_token)
})
