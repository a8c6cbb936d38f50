import t from 'tap'
import { SmtpCapture, codeIn } from '../helpers/smtp.ts'
import { TwilioCapture } from '../helpers/twilio.ts'
import { bearer } from '../helpers/users.ts'
import { auditRows, build, fakeClock, post, sendCode, strongPassword } from '../helpers/otp.ts'

// The whole self-service story against a real SMTP server and a Twilio stand-in:
// sign-up -> verify -> login-with-otp -> change-password -> forget-password.
t.test('sign-up, verify, login-with-otp, change-password and forget-password, told by the captured messages', async (t) => {
  const smtp = await new SmtpCapture().start()
  const twilio = await new TwilioCapture().start()
  t.teardown(() => smtp.stop())
  t.teardown(() => twilio.stop())
  const clock = fakeClock()
  const app = await build(t, { ...smtp.env(), ...twilio.env(), APP_NAME: 'Story App' }, { now: clock.now })
  t.equal(app.notify.transports.email, 'smtp')
  t.equal(app.notify.transports.sms, 'twilio')
  const email = 'grace@example.com'

  // 1. Sign-up code, by email.
  const sent = await sendCode(app, { email: 'Grace@Example.com', purpose: 'signup' })
  t.equal(sent.statusCode, 200, sent.body)
  t.same(sent.json().data, { channel: 'email', destination: 'g***@example.com', expires_in: 600, resend_in: 60 })
  const signupMail = await smtp.waitFor((m) => m.to.includes(email), 'the sign-up code')
  t.equal(signupMail.subject, 'Your Story App verification code')
  t.match(signupMail.headers.from, /Story App.*no-reply@auth\.test/)
  t.notMatch(signupMail.raw, /nodemailer|twilio/i, 'no third-party branding or X-Mailer header')
  const signupCode = codeIn(signupMail.text)!
  t.match(signupCode, /^\d{6}$/)
  t.match(signupMail.html, new RegExp(`>${signupCode}<`), 'the HTML part shows the code too')
  t.match(signupMail.text, /finish creating your Story App account/)

  // 2. verify: the code, the password and profile basics create the account and log it in.
  const created = await post(app, '/auth/verify', { email, otp: signupCode, password: strongPassword, first_name: 'Grace', user_name: 'grace_h', timezone: 'Europe/London' })
  t.equal(created.statusCode, 201, created.body)
  const first = created.json().data
  t.equal(first.user.email, email, 'the email is stored lower-cased')
  t.equal(first.user.is_email_verified, true)
  t.equal(first.user.auth_type, 'email')
  t.equal(first.user.has_password, true)
  t.equal(first.user.timezone, 'Europe/London')
  const profile = await app.inject({ url: '/api/v1/settings/profile', headers: bearer(first.access_token) })
  t.equal(profile.statusCode, 200, 'the new account is in the user group (view_profile)')
  t.equal((await auditRows(app, 'signup', first.user.user_id)).length, 1)

  // 3. login-with-otp on another device.
  smtp.messages.length = 0
  t.equal((await sendCode(app, { email, purpose: 'login' }, { remoteAddress: '10.9.0.2' })).statusCode, 429, 'one code per address per minute, whatever the purpose')
  clock.advance(61_000)
  t.equal((await sendCode(app, { email, purpose: 'login' }, { remoteAddress: '10.9.0.2' })).statusCode, 200)
  const loginMail = await smtp.waitFor((m) => m.to.includes(email))
  t.match(loginMail.text, /sign in to Story App/)
  const otpLogin = await post(app, '/auth/login-with-otp', { email, otp: codeIn(loginMail.text) }, { headers: { 'user-agent': 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Version/17.0 Mobile/15E148 Safari/604.1' } })
  t.equal(otpLogin.statusCode, 200, otpLogin.body)
  const second = otpLogin.json().data
  t.same(Object.keys(second).sort(), Object.keys(first).sort(), 'the same token bundle as any login')
  const newDevice = await smtp.waitFor((m) => m.to.includes(email) && /New sign-in/.test(m.subject), 'the new-device notice')
  t.match(newDevice.text, /Safari/)
  t.equal((await auditRows(app, 'login_success', first.user.user_id)).filter((r) => (r.metadata as { method?: string }).method === 'otp').length, 1)

  // 4. change-password from the second session: the first session ends, this one continues.
  smtp.messages.length = 0
  const newPassword = 'a brand new passphrase 7'
  const changed = await post(app, '/auth/change-password', { current_password: strongPassword, new_password: newPassword }, { headers: bearer(second.access_token) })
  t.equal(changed.statusCode, 200, changed.body)
  t.equal(changed.json().data.revoked_sessions, 1)
  t.equal((await app.inject({ url: '/api/v1/settings/profile', headers: bearer(first.access_token) })).statusCode, 401, 'the other session is revoked')
  t.equal((await app.inject({ url: '/api/v1/settings/profile', headers: bearer(second.access_token) })).statusCode, 200, 'the current one continues')
  const changedMail = await smtp.waitFor((m) => m.to.includes(email) && /password was changed/.test(m.subject), 'the password-changed notice')
  t.notOk(codeIn(changedMail.text), 'a notice carries no code')

  // 5. forget-password: a reset code, then the new password; every session ends, no tokens.
  smtp.messages.length = 0
  t.equal((await sendCode(app, { email, purpose: 'reset_password' }, { remoteAddress: '10.9.0.3' })).statusCode, 429, 'the cooldown holds across IPs')
  clock.advance(61_000)
  t.equal((await sendCode(app, { email, purpose: 'reset_password' }, { remoteAddress: '10.9.0.3' })).statusCode, 200)
  const resetMail = await smtp.waitFor((m) => m.to.includes(email))
  t.match(resetMail.text, /reset your Story App password/)
  const finalPassword = 'third time lucky passphrase'
  const reset = await post(app, '/auth/forget-password', { email, otp: codeIn(resetMail.text), new_password: finalPassword })
  t.equal(reset.statusCode, 200, reset.body)
  t.same(reset.json().data, { revoked_sessions: 1 }, 'no tokens in the answer')
  t.equal((await app.inject({ url: '/api/v1/settings/profile', headers: bearer(second.access_token) })).statusCode, 401, 'every session is revoked')
  await smtp.waitFor((m) => m.to.includes(email) && /password was reset/.test(m.subject), 'the reset notice')
  const old = await post(app, '/auth/login-with-password', { identifier: email, password: newPassword })
  t.equal(old.statusCode, 401)
  const fresh = await post(app, '/auth/login-with-password', { identifier: 'GRACE@example.com', password: finalPassword })
  t.equal(fresh.statusCode, 200)

  // Phone sign-up through Twilio (SMS), normalised to E.164.
  const phone = await sendCode(app, { phone_number: '+44 20 7946 0958', purpose: 'signup' })
  t.equal(phone.statusCode, 200, phone.body)
  const sms = await twilio.waitFor((m) => m.to === '+442079460958', 'the sign-up SMS')
  t.equal(sms.from, '+15005550006')
  t.match(sms.body, /is your Story App code/)
  const byPhone = await post(app, '/auth/verify', { phone_number: '+442079460958', otp: codeIn(sms.body), password: 'phone people passphrase' })
  t.equal(byPhone.statusCode, 201, byPhone.body)
  t.equal(byPhone.json().data.user.phone_number, '+442079460958')
  t.equal(byPhone.json().data.user.auth_type, 'phone')
  t.equal(byPhone.json().data.user.is_phone_verified, true)
  t.equal(byPhone.json().data.user.email, null)
  await app.notify.settled()
})
