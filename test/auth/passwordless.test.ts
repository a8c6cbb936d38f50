import t from 'tap'
import { eq } from 'drizzle-orm'
import { user } from '../../db/schema/index.ts'
import { actor, call, fastEnv } from '../admin/helpers.ts'
import { bearer, createUser, defaultPassword } from '../helpers/users.ts'
import { auditRows, build, lastCode, post, readOutbox, sendCode, strongPassword } from '../helpers/otp.ts'

/**
 * Issue 18: accounts without a password. Sign-up may omit it, an administrator may
 * create one without it; such an account logs in with one-time passwords, and
 * `set-password` gives it one (409 once it has one). A password login of such an
 * account fails exactly like a wrong password, after a real hash verification (SR-7).
 */
const app = await build(t, fastEnv)
const loginWith = (identifier: string, password: string) => post(app, '/auth/login-with-password', { identifier, password })

async function otpLogin (email: string) {
  await sendCode(app, { email, purpose: 'login' })
  const res = await post(app, '/auth/login-with-otp', { email, otp: lastCode(app, email, 'login') })
  if (res.statusCode !== 200) throw new Error(`otp login: ${res.statusCode} ${res.body}`)
  return res.json().data as { access_token: string, session_id: string }
}

t.test('issue 18: sign-up without a password, then set-password (once)', async (t) => {
  const email = 'no-password@example.com'
  await sendCode(app, { email, purpose: 'signup' })
  const signup = await post(app, '/auth/verify', { email, otp: lastCode(app, email, 'signup'), first_name: 'Nell' })
  t.equal(signup.statusCode, 201, signup.body)
  const data = signup.json().data
  t.match(data.user, { email, has_password: false, is_email_verified: true })
  const [row] = await app.db.select().from(user).where(eq(user.user_id, data.user.user_id))
  t.equal(row.password, null)
  t.equal(row.password_changed_at, null)
  t.match((await auditRows(app, 'signup', row.user_id))[0].metadata, { password_set: false })

  const change = await post(app, '/auth/change-password', { current_password: 'anything at all', new_password: strongPassword }, { headers: bearer(data.access_token) })
  t.equal(change.json().error.code, 'PASSWORD_NOT_SET', 'change-password points to set-password')

  const set = await post(app, '/auth/set-password', { password: strongPassword }, { headers: bearer(data.access_token) })
  t.equal(set.statusCode, 200, set.body)
  t.equal(set.json().data.has_password, true)
  t.equal((await auditRows(app, 'password_set', row.user_id)).length, 1)
  t.equal((await loginWith(email, strongPassword)).statusCode, 200, 'the password now logs in')

  const again = await post(app, '/auth/set-password', { password: 'another passphrase 77' }, { headers: bearer(data.access_token) })
  t.equal(again.statusCode, 409)
  t.equal(again.json().error.code, 'PASSWORD_ALREADY_SET')
  t.equal((await loginWith(email, 'another passphrase 77')).statusCode, 401, 'and the first password stays')
})

t.test('SR-7: a password login of an account without one fails like a wrong password, after a real hash verification', async (t) => {
  const none = await createUser(app, { email: 'passwordless-sr7@example.com', password: null })
  await createUser(app, { email: 'has-password-sr7@example.com' })
  const before = app.passwords.tasks.verify
  const passwordless = await loginWith(none.email!, defaultPassword)
  t.equal(app.passwords.tasks.verify, before + 1, 'the dummy hash was verified in the pool')
  const wrong = await loginWith('has-password-sr7@example.com', 'not the password')
  const unknown = await loginWith('nobody-sr7@example.com', defaultPassword)
  for (const res of [passwordless, wrong, unknown]) {
    t.equal(res.statusCode, 401)
    t.equal(res.json().error.code, 'AUTH_INVALID_CREDENTIALS')
  }
  t.equal(passwordless.json().error.message, wrong.json().error.message)
  t.same(Object.keys(passwordless.json().error).sort(), Object.keys(wrong.json().error).sort())
  const [failed] = await auditRows(app, 'login_failed', none.user_id)
  t.ok(failed, 'counted and audited like any failed login')
})

t.test('issue 18: an account created by OTP sign-up logs in by OTP and sets its password there', async (t) => {
  const none = await createUser(app, { email: 'otp-only@example.com', password: null })
  const tokens = await otpLogin(none.email!)
  const set = await post(app, '/auth/set-password', { password: strongPassword }, { headers: bearer(tokens.access_token) })
  t.equal(set.statusCode, 200, set.body)
  t.equal((await loginWith(none.email!, strongPassword)).statusCode, 200)
})

t.test('issue 18: an account an administrator created without a password sets it after an OTP login; the invitation stops working', async (t) => {
  const admin = await actor(app, { groups: ['admin'] })
  const created = await call(app, 'POST', '/users', admin, { email: 'invited-otp@example.test' })
  t.equal(created.statusCode, 201, created.body)
  t.equal(created.json().data.user.has_password, false)
  const invitation = readOutbox(app).filter((m) => m.to === 'invited-otp@example.test' && m.template === 'invitation').pop()
  const code = invitation?.text.match(/[A-Za-z0-9_-]{43}/)?.[0]
  t.ok(code, 'an invitation went out')

  const tokens = await otpLogin('invited-otp@example.test')
  const set = await post(app, '/auth/set-password', { password: strongPassword }, { headers: bearer(tokens.access_token) })
  t.equal(set.statusCode, 200, set.body)
  t.equal(set.json().data.is_email_verified, true, 'the OTP login proved the address')
  const accept = await post(app, '/auth/accept-invitation', { code, password: 'a different passphrase 9' })
  t.equal(accept.json().error.code, 'INVITATION_INVALID', 'the invitation was cancelled by set-password')
  t.equal((await loginWith('invited-otp@example.test', strongPassword)).statusCode, 200)
})
