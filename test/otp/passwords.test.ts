import t from 'tap'
import { eq } from 'drizzle-orm'
import { user } from '../../db/schema/index.ts'
import { bearer, createUser, defaultPassword, login } from '../helpers/users.ts'
import { auditRows, build, fakeClock, lastCode, post, sendCode, strongPassword } from '../helpers/otp.ts'

// SR-1 to SR-6 on the routes that set passwords: sign-up, set-password,
// change-password and forget-password.
const clock = fakeClock()
const app = await build(t, { AUTH_RATE_LIMIT_PER_IP: '1000', AUTH_RATE_LIMIT_PER_IDENTIFIER: '100' }, { now: clock.now })
let counter = 0
const nextEmail = () => `pw-${++counter}@example.com`

async function signupCode (email: string) {
  const res = await sendCode(app, { email, purpose: 'signup' })
  if (res.statusCode !== 200) throw new Error(res.body)
  return lastCode(app, email, 'signup')
}
const signUp = (email: string, otp: string, password: string) => post(app, '/auth/verify', { email, otp, password })
const hashOf = async (email: string) => (await app.db.select({ password: user.password }).from(user).where(eq(user.email, email)))[0]?.password

t.test('SR-1: length limits on sign-up; refusals do not spend the code', async (t) => {
  const email = nextEmail()
  const code = await signupCode(email)
  const long = await signUp(email, code, 'x'.repeat(129))
  t.equal(long.statusCode, 400)
  t.equal(long.json().error.code, 'PASSWORD_TOO_LONG')
  const huge = await signUp(email, code, 'y'.repeat(4000))
  t.equal(huge.json().error.code, 'PASSWORD_TOO_LONG', 'a huge one is a fast 400, not a 500')
  const short = await signUp(email, code, 'short7!')
  t.equal(short.json().error.code, 'PASSWORD_TOO_SHORT')
  t.match(short.json().error.message, /8/)
  const ok = await signUp(email, code, 'x'.repeat(128))
  t.equal(ok.statusCode, 201, 'the same code still works: 128 characters is the maximum')
})

t.test('SR-2: a 100-byte password is not truncated to 72', async (t) => {
  const email = nextEmail()
  const password = 'p'.repeat(72) + 'the rest matters too'.padEnd(28, '!')
  t.equal(Buffer.byteLength(password), 100)
  t.equal((await signUp(email, await signupCode(email), password)).statusCode, 201)
  const prefix = await post(app, '/auth/login-with-password', { identifier: email, password: password.slice(0, 72) })
  t.equal(prefix.statusCode, 401, 'the first 72 bytes are not the password')
  t.equal((await post(app, '/auth/login-with-password', { identifier: email, password })).statusCode, 200)
})

t.test('SR-3: spaces, emoji and non-Latin letters work', async (t) => {
  for (const password of ['  lots   of   spaces  ', '🔐🦄🌈🍕🚀🎉🐙🌻', 'كلمة سر طويلة جدا', 'пароль без правил']) {
    const email = nextEmail()
    const created = await signUp(email, await signupCode(email), password)
    t.equal(created.statusCode, 201, JSON.stringify(password))
    t.equal((await post(app, '/auth/login-with-password', { identifier: email, password })).statusCode, 200)
  }
})

t.test('SR-4: common passwords are refused everywhere a password is set', async (t) => {
  const email = nextEmail()
  const weakSignup = await signUp(email, await signupCode(email), 'password123')
  t.equal(weakSignup.statusCode, 400)
  t.equal(weakSignup.json().error.code, 'WEAK_PASSWORD')

  const account = await createUser(app)
  const tokens = await login(app, account.email!)
  const weakChange = await post(app, '/auth/change-password', { current_password: defaultPassword, new_password: 'iloveyou' }, { headers: bearer(tokens.access_token) })
  t.equal(weakChange.json().error.code, 'WEAK_PASSWORD')

  clock.advance(61_000)
  await sendCode(app, { email: account.email!, purpose: 'reset_password' })
  const weakReset = await post(app, '/auth/forget-password', { email: account.email!, otp: lastCode(app, account.email!, 'reset_password'), new_password: 'qwertyuiop' })
  t.equal(weakReset.json().error.code, 'WEAK_PASSWORD')

  const passwordless = await createUser(app, { password: null })
  clock.advance(61_000)
  await sendCode(app, { email: passwordless.email!, purpose: 'login' })
  const otpLogin = await post(app, '/auth/login-with-otp', { email: passwordless.email!, otp: lastCode(app, passwordless.email!, 'login') })
  const weakSet = await post(app, '/auth/set-password', { password: 'football' }, { headers: bearer(otpLogin.json().data.access_token) })
  t.equal(weakSet.json().error.code, 'WEAK_PASSWORD')
})

t.test('SR-5: every new password is stored as Argon2id', async (t) => {
  const email = nextEmail()
  await signUp(email, await signupCode(email), strongPassword)
  t.match(await hashOf(email), /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/)
  const tokens = await login(app, email, strongPassword)
  await post(app, '/auth/change-password', { current_password: strongPassword, new_password: 'another strong passphrase' }, { headers: bearer(tokens.access_token) })
  t.match(await hashOf(email), /^\$argon2id\$/)
})

t.test('SR-6: change-password needs the current password; other sessions end, this one continues', async (t) => {
  const account = await createUser(app)
  const here = await login(app, account.email!)
  const there = await login(app, account.email!)
  const elsewhere = await login(app, account.email!)

  const wrong = await post(app, '/auth/change-password', { current_password: 'not my password', new_password: 'replacement passphrase' }, { headers: bearer(here.access_token) })
  t.equal(wrong.statusCode, 400)
  t.equal(wrong.json().error.code, 'AUTH_CURRENT_PASSWORD_INVALID')
  t.equal((await app.inject({ url: '/api/v1/auth/sessions', headers: bearer(there.access_token) })).statusCode, 200, 'a refused change revokes nothing')

  const missing = await post(app, '/auth/change-password', { new_password: 'replacement passphrase' }, { headers: bearer(here.access_token) })
  t.equal(missing.json().error.code, 'VALIDATION_ERROR', 'the current password is required')

  const changed = await post(app, '/auth/change-password', { current_password: defaultPassword, new_password: 'replacement passphrase' }, { headers: bearer(here.access_token) })
  t.equal(changed.statusCode, 200, changed.body)
  t.same(changed.json().data, { revoked_sessions: 2 })
  t.equal((await app.inject({ url: '/api/v1/auth/sessions', headers: bearer(there.access_token) })).json().error.code, 'AUTH_SESSION_REVOKED')
  t.equal((await app.inject({ url: '/api/v1/auth/sessions', headers: bearer(elsewhere.access_token) })).statusCode, 401)
  t.equal((await app.inject({ url: '/api/v1/auth/sessions', headers: bearer(here.access_token) })).statusCode, 200, 'the current session continues')
  t.equal((await post(app, '/auth/refresh-token', { refresh_token: there.refresh_token })).statusCode, 401, 'revoked sessions cannot refresh')
  t.equal((await post(app, '/auth/login-with-password', { identifier: account.email!, password: defaultPassword })).statusCode, 401)
  t.equal((await post(app, '/auth/login-with-password', { identifier: account.email!, password: 'replacement passphrase' })).statusCode, 200)

  const [row] = await app.db.select().from(user).where(eq(user.user_id, account.user_id))
  t.ok(row.password_changed_at, 'password_changed_at is set')
  const audits = await auditRows(app, 'password_change', account.user_id)
  t.equal(audits.length, 1)
  t.notOk(JSON.stringify(audits).includes('replacement passphrase'))
})

t.test('SR-6: forget-password revokes every session and logs nobody in', async (t) => {
  const account = await createUser(app)
  const a = await login(app, account.email!)
  const b = await login(app, account.email!)
  clock.advance(61_000)
  await sendCode(app, { email: account.email!, purpose: 'reset_password' })
  const reset = await post(app, '/auth/forget-password', { email: account.email!, otp: lastCode(app, account.email!, 'reset_password'), new_password: 'recovered passphrase' })
  t.equal(reset.statusCode, 200, reset.body)
  t.same(reset.json().data, { revoked_sessions: 2 }, 'no token in the answer')
  for (const tokens of [a, b]) t.equal((await app.inject({ url: '/api/v1/auth/sessions', headers: bearer(tokens.access_token) })).statusCode, 401)
  t.equal((await post(app, '/auth/login-with-password', { identifier: account.email!, password: 'recovered passphrase' })).statusCode, 200)
  t.equal((await auditRows(app, 'password_reset', account.user_id)).length, 1)
})

t.test('SR-6, SR-9: a reset also lifts a login lockout', async (t) => {
  const account = await createUser(app)
  for (let i = 0; i < 5; i++) await post(app, '/auth/login-with-password', { identifier: account.email!, password: `guess number ${i}` })
  t.equal((await post(app, '/auth/login-with-password', { identifier: account.email!, password: defaultPassword })).statusCode, 429)
  clock.advance(61_000)
  await sendCode(app, { email: account.email!, purpose: 'reset_password' })
  await post(app, '/auth/forget-password', { email: account.email!, otp: lastCode(app, account.email!, 'reset_password'), new_password: 'unlocked passphrase' })
  t.equal((await post(app, '/auth/login-with-password', { identifier: account.email!, password: 'unlocked passphrase' })).statusCode, 200)
})

t.test('set-password is for accounts without one; change-password for the others', async (t) => {
  const withPassword = await createUser(app)
  const tokens = await login(app, withPassword.email!)
  const refused = await post(app, '/auth/set-password', { password: 'new strong passphrase' }, { headers: bearer(tokens.access_token) })
  t.equal(refused.statusCode, 409)
  t.equal(refused.json().error.code, 'PASSWORD_ALREADY_SET')

  const passwordless = await createUser(app, { password: null })
  clock.advance(61_000)
  await sendCode(app, { email: passwordless.email!, purpose: 'login' })
  const otpLogin = await post(app, '/auth/login-with-otp', { email: passwordless.email!, otp: lastCode(app, passwordless.email!, 'login') })
  const headers = bearer(otpLogin.json().data.access_token)
  const change = await post(app, '/auth/change-password', { current_password: 'anything at all', new_password: 'new strong passphrase' }, { headers })
  t.equal(change.json().error.code, 'PASSWORD_NOT_SET')
  const set = await post(app, '/auth/set-password', { password: 'new strong passphrase' }, { headers })
  t.equal(set.statusCode, 200, set.body)
  t.equal(set.json().data.has_password, true)
  t.equal((await auditRows(app, 'password_set', passwordless.user_id)).length, 1)
  t.equal((await post(app, '/auth/login-with-password', { identifier: passwordless.email!, password: 'new strong passphrase' })).statusCode, 200)
})
