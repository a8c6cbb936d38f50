import t from 'tap'
import { createUser } from '../helpers/users.ts'
import { auditRows, build, fakeClock, lastCode, post, sendCode, strongPassword } from '../helpers/otp.ts'

/**
 * Issue 18: a sign-up may give both an email and a phone number. Only the address its
 * code went to (`signup_code_sent_to`) is verified; the other starts unverified and
 * gets a verify_email / verify_phone code at once (`code_sent_to` in the answer), so
 * `verify-email-and-phone` and those purposes are reachable.
 */
const clock = fakeClock()
const app = await build(t, { AUTH_RATE_LIMIT_PER_IP: '1000', AUTH_RATE_LIMIT_PER_IDENTIFIER: '100' }, { now: clock.now })
const bearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` } })

t.test('issue 18: email proven by the code, phone unverified with a code sent to it, then verified', async (t) => {
  const email = 'both-contacts@example.com'
  await sendCode(app, { email, purpose: 'signup' })
  const signup = await post(app, '/auth/verify', {
    email, phone_number: '+1 415 555 0150', signup_code_sent_to: 'email', otp: lastCode(app, email, 'signup'), password: strongPassword
  })
  t.equal(signup.statusCode, 201, signup.body)
  const data = signup.json().data
  t.match(data.user, { email, phone_number: '+14155550150', is_email_verified: true, is_phone_verified: false, auth_type: 'email' })
  t.match(data.code_sent_to, { purpose: 'verify_phone', channel: 'sms', destination: '+14*******50', expires_in: Number, resend_in: Number })
  t.match((await auditRows(app, 'signup', data.user.user_id))[0].metadata, { destination: 'b***@example.com', unverified: '+14*******50', password_set: true })

  const verified = await post(app, '/auth/verify-email-and-phone', { phone_number: '+14155550150', otp: lastCode(app, '+14155550150', 'verify_phone') }, bearer(data.access_token))
  t.equal(verified.statusCode, 200, verified.body)
  t.equal(verified.json().data.is_phone_verified, true)
  t.equal((await auditRows(app, 'phone_verified', data.user.user_id)).length, 1)
})

t.test('issue 18: phone proven by the code, email unverified; verify_email can be asked for again', async (t) => {
  const phone = '+14155550151'
  await sendCode(app, { phone_number: phone, purpose: 'signup' })
  const signup = await post(app, '/auth/verify', {
    email: 'Second@Example.com', phone_number: phone, signup_code_sent_to: 'phone_number', otp: lastCode(app, phone, 'signup')
  })
  t.equal(signup.statusCode, 201, signup.body)
  const data = signup.json().data
  t.match(data.user, { email: 'second@example.com', is_email_verified: false, is_phone_verified: true, auth_type: 'phone', has_password: false })
  t.match(data.code_sent_to, { purpose: 'verify_email', channel: 'email', destination: 's***@example.com' })

  clock.advance(61_000)
  const resent = await sendCode(app, { email: 'second@example.com', purpose: 'verify_email' }, bearer(data.access_token))
  t.equal(resent.statusCode, 200, 'the verify_email purpose is reachable')
  const verified = await post(app, '/auth/verify-email-and-phone', { email: 'second@example.com', otp: lastCode(app, 'second@example.com', 'verify_email') }, bearer(data.access_token))
  t.equal(verified.statusCode, 200, verified.body)
  t.match(verified.json().data, { is_email_verified: true, is_phone_verified: true })
})

t.test('issue 18: with both addresses signup_code_sent_to is required; refused before the code is spent', async (t) => {
  const email = 'which-one@example.com'
  await sendCode(app, { email, purpose: 'signup' })
  const code = lastCode(app, email, 'signup')
  const missing = await post(app, '/auth/verify', { email, phone_number: '+14155550152', otp: code })
  t.equal(missing.statusCode, 400)
  t.match(missing.json().error, { code: 'VALIDATION_ERROR', details: [{ field: 'body/signup_code_sent_to' }] })
  const mismatch = await post(app, '/auth/verify', { email, signup_code_sent_to: 'phone_number', otp: code })
  t.equal(mismatch.json().error.code, 'VALIDATION_ERROR', 'naming an address that was not given')
  const single = await post(app, '/auth/verify', { email, otp: code })
  t.equal(single.statusCode, 201, 'the code still works')
  t.equal(single.json().data.code_sent_to, undefined, 'one address: no second code')
  t.equal(single.json().data.user.is_phone_verified, false)
})

t.test('issue 18: a taken second address is refused after the code, with a ticket to retry', async (t) => {
  await createUser(app, { email: 'phone-holder@example.com', phone_number: '+14155550153' })
  const email = 'late-comer@example.com'
  await sendCode(app, { email, purpose: 'signup' })
  const taken = await post(app, '/auth/verify', { email, phone_number: '+14155550153', signup_code_sent_to: 'email', otp: lastCode(app, email, 'signup') })
  t.equal(taken.statusCode, 409)
  t.equal(taken.json().error.code, 'PHONE_TAKEN')
  const ticket = taken.json().error.details?.verification_token
  t.type(ticket, 'string')
  const retried = await post(app, '/auth/verify', { email, phone_number: '+14155550154', signup_code_sent_to: 'email', verification_token: ticket })
  t.equal(retried.statusCode, 201, retried.body)
  t.match(retried.json().data.code_sent_to, { purpose: 'verify_phone' })
})
