import t from 'tap'
import { eq } from 'drizzle-orm'
import { user } from '../../db/schema/index.ts'
import { SmtpCapture, codeIn } from '../helpers/smtp.ts'
import { TwilioCapture } from '../helpers/twilio.ts'
import { bearer, createUser, defaultPassword, login } from '../helpers/users.ts'
import { auditRows, build, fakeClock, post, sendCode } from '../helpers/otp.ts'

// SR-23: email and phone changes need a fresh login or the current password,
// are confirmed by a code sent to the new address, and notify the old one.
const smtp = await new SmtpCapture().start()
const twilio = await new TwilioCapture().start()
t.teardown(() => smtp.stop())
t.teardown(() => twilio.stop())
const clock = fakeClock()
const app = await build(t, { ...smtp.env(), ...twilio.env(), AUTH_RATE_LIMIT_PER_IP: '1000', AUTH_RATE_LIMIT_PER_IDENTIFIER: '100' }, { now: clock.now })
const stale = () => clock.advance(11 * 60_000)

t.test('SR-23: change-email', async (t) => {
  const account = await createUser(app, { email: 'old-address@example.com' })
  const tokens = await login(app, account.email!)
  const headers = bearer(tokens.access_token)
  stale()

  const refused = await post(app, '/settings/change-email', { new_email: 'new-address@example.com' }, { headers })
  t.equal(refused.statusCode, 403, 'a login older than the window is not enough')
  t.equal(refused.json().error.code, 'AUTH_REAUTH_REQUIRED')
  const wrong = await post(app, '/settings/change-email', { new_email: 'new-address@example.com', current_password: 'not the password' }, { headers })
  t.equal(wrong.statusCode, 400)
  t.equal(wrong.json().error.code, 'AUTH_CURRENT_PASSWORD_INVALID')
  t.same(smtp.messages, [], 'nothing was sent')

  const started = await post(app, '/settings/change-email', { new_email: 'New-Address@Example.com', current_password: defaultPassword }, { headers })
  t.equal(started.statusCode, 200, started.body)
  t.match(started.json().data, { status: 'otp_sent', otp: { channel: 'email', destination: 'n***@example.com' } })
  const mail = await smtp.waitFor((m) => m.to.includes('new-address@example.com'), 'the code at the new address')
  t.match(mail.text, /confirm your new email address/)
  t.same(smtp.to('old-address@example.com'), [], 'the code goes to the new address only')

  const intruder = await createUser(app)
  const intruderTokens = await login(app, intruder.email!)
  const stolen = await post(app, '/settings/change-email', { new_email: 'new-address@example.com', otp: codeIn(mail.text) }, { headers: bearer(intruderTokens.access_token) })
  t.equal(stolen.json().error.code, 'OTP_INVALID', 'the code is bound to the account that asked for it')

  const confirmed = await post(app, '/settings/change-email', { new_email: 'new-address@example.com', otp: codeIn(mail.text) }, { headers })
  t.equal(confirmed.statusCode, 200, confirmed.body)
  t.match(confirmed.json().data, { status: 'changed', user: { email: 'new-address@example.com', is_email_verified: true } })
  const notice = await smtp.waitFor((m) => m.to.includes('old-address@example.com'), 'the notice at the old address')
  t.match(notice.subject, /email address of your Auth API account was changed/)
  t.match(notice.text, /n\*\*\*@example\.com/)
  t.notOk(codeIn(notice.text))

  const profile = await app.inject({ url: '/api/v1/settings/profile', headers })
  t.equal(profile.json().data.email, 'new-address@example.com', 'the profile shows the change at once')
  t.equal((await post(app, '/auth/login-with-password', { identifier: 'new-address@example.com', password: defaultPassword })).statusCode, 200)
  t.equal((await post(app, '/auth/login-with-password', { identifier: 'old-address@example.com', password: defaultPassword })).statusCode, 401)
  const audits = await auditRows(app, 'email_change', account.user_id)
  t.equal(audits.length, 1)
  t.match(audits[0].metadata, { from: 'o***@example.com', to: 'n***@example.com' })
})

t.test('SR-23: a fresh login needs no password; taken and unchanged addresses are refused', async (t) => {
  const account = await createUser(app, { email: 'fresh@example.com' })
  await createUser(app, { email: 'occupied@example.com' })
  const headers = bearer((await login(app, account.email!)).access_token)
  const taken = await post(app, '/settings/change-email', { new_email: 'OCCUPIED@example.com' }, { headers })
  t.equal(taken.statusCode, 409)
  t.equal(taken.json().error.code, 'EMAIL_TAKEN')
  const same = await post(app, '/settings/change-email', { new_email: 'fresh@example.com' }, { headers })
  t.equal(same.json().error.code, 'CONTACT_UNCHANGED')
  const started = await post(app, '/settings/change-email', { new_email: 'fresher@example.com' }, { headers })
  t.equal(started.statusCode, 200, 'within the window, the login itself is enough')
})

t.test('SR-23: change-phone by SMS, with a notice to the old number', async (t) => {
  const account = await createUser(app, { email: 'phone-owner@example.com', phone_number: '+14155550130' })
  const headers = bearer((await login(app, account.email!)).access_token)
  const started = await post(app, '/settings/change-phone', { new_phone_number: '+1 (415) 555-0131' }, { headers })
  t.equal(started.statusCode, 200, started.body)
  t.match(started.json().data.otp, { channel: 'sms', destination: '+14*******31' })
  const sms = await twilio.waitFor((m) => m.to === '+14155550131')
  const confirmed = await post(app, '/settings/change-phone', { new_phone_number: '+14155550131', otp: codeIn(sms.body) }, { headers })
  t.equal(confirmed.statusCode, 200, confirmed.body)
  t.match(confirmed.json().data.user, { phone_number: '+14155550131', is_phone_verified: true })
  const notice = await twilio.waitFor((m) => m.to === '+14155550130', 'the notice to the old number')
  t.match(notice.body, /phone number of your account was changed to \+14\*+31/)
  t.equal((await auditRows(app, 'phone_change', account.user_id)).length, 1)

  await createUser(app, { phone_number: '+14155550132' })
  clock.advance(61_000)
  const taken = await post(app, '/settings/change-phone', { new_phone_number: '+14155550132' }, { headers })
  t.equal(taken.json().error.code, 'PHONE_TAKEN')
})

t.test('verify-email-and-phone: a code for your own address marks it verified', async (t) => {
  const account = await createUser(app, { email: 'verify-me@example.com', phone_number: '+14155550140' })
  const headers = bearer((await login(app, account.email!)).access_token)
  const anonymous = await sendCode(app, { phone_number: '+14155550140', purpose: 'verify_phone' })
  t.equal(anonymous.statusCode, 401, 'verify_phone needs a signed-in caller')
  const foreign = await sendCode(app, { phone_number: '+14155550149', purpose: 'verify_phone' }, { headers })
  t.equal(foreign.json().error.code, 'VALIDATION_ERROR', 'only your own number')
  const alreadyVerified = await sendCode(app, { email: 'verify-me@example.com', purpose: 'verify_email' }, { headers })
  t.equal(alreadyVerified.json().error.code, 'CONTACT_ALREADY_VERIFIED')

  const sent = await sendCode(app, { phone_number: '+14155550140', purpose: 'verify_phone' }, { headers })
  t.equal(sent.statusCode, 200, sent.body)
  const sms = await twilio.waitFor((m) => m.to === '+14155550140')
  t.match(sms.body, /is your Auth API code/)
  const someoneElse = await createUser(app, { email: 'someone@example.com', phone_number: '+14155550141' })
  const theirs = await post(app, '/auth/verify-email-and-phone', { phone_number: '+14155550140', otp: codeIn(sms.body) }, { headers: bearer((await login(app, someoneElse.email!)).access_token) })
  t.equal(theirs.json().error.code, 'OTP_INVALID', 'another account cannot use the code')
  const verified = await post(app, '/auth/verify-email-and-phone', { phone_number: '+14155550140', otp: codeIn(sms.body) }, { headers })
  t.equal(verified.statusCode, 200, verified.body)
  t.equal(verified.json().data.is_phone_verified, true)
  const again = await post(app, '/auth/verify-email-and-phone', { phone_number: '+14155550140', otp: codeIn(sms.body) }, { headers })
  t.equal(again.json().error.code, 'CONTACT_ALREADY_VERIFIED')
  t.equal((await auditRows(app, 'phone_verified', account.user_id)).length, 1)
})

t.test('SR-23: a login from a new device notifies the verified address', async (t) => {
  const account = await createUser(app, { email: 'devices@example.com' })
  const firefox = { 'user-agent': 'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0' }
  await login(app, account.email!, defaultPassword, firefox)
  await login(app, account.email!, defaultPassword, firefox)
  await app.notify.settled()
  t.same(smtp.to('devices@example.com'), [], 'the first login and a known device send nothing')
  await login(app, account.email!, defaultPassword, { 'user-agent': 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36' })
  const notice = await smtp.waitFor((m) => m.to.includes('devices@example.com'), 'the new-device notice')
  t.equal(notice.subject, 'New sign-in to your Auth API account')
  t.match(notice.text, /Chrome on Windows/)
  t.match(notice.text, /127\.0\.0\.1/)
})

t.test('SR-23: password changes notify; unverified addresses get no notice', async (t) => {
  const verified = await createUser(app, { email: 'told@example.com' })
  const headers = bearer((await login(app, verified.email!)).access_token)
  await post(app, '/auth/change-password', { current_password: defaultPassword, new_password: 'told you so passphrase' }, { headers })
  const notice = await smtp.waitFor((m) => m.to.includes('told@example.com'))
  t.equal(notice.subject, 'Your Auth API password was changed')

  const unverified = await createUser(app, { email: 'unverified@example.com' })
  await app.db.update(user).set({ is_email_verified: false }).where(eq(user.user_id, unverified.user_id))
  const theirs = bearer((await login(app, unverified.email!)).access_token)
  t.equal((await post(app, '/auth/change-password', { current_password: defaultPassword, new_password: 'silent change passphrase' }, { headers: theirs })).statusCode, 200)
  await app.notify.settled()
  t.same(smtp.to('unverified@example.com'), [], 'notices go to verified channels only')
})
