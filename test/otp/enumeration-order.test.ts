import t from 'tap'
import { bearer, createUser, login } from '../helpers/users.ts'
import { build, lastCode, post, sendCode, strongPassword } from '../helpers/otp.ts'

// SR-8: whether a user name, email or phone number is taken is told only after the
// checks that bound enumeration: the code on sign-up, the per-address limit and
// the availability budget on change-email / change-phone.

t.test('SR-8: sign-up checks the code before it says the user name is taken', async (t) => {
  const app = await build(t, { AUTH_RATE_LIMIT_PER_IP: '1000', AUTH_RATE_LIMIT_PER_IDENTIFIER: '100' })
  await createUser(app, { user_name: 'taken_name' })
  const email = 'newcomer@example.com'
  const body = { email, password: strongPassword, user_name: 'taken_name' }

  const guessed = await post(app, '/auth/verify', { ...body, otp: '123456' })
  t.equal(guessed.json().error.code, 'OTP_INVALID', 'no code: the name is not judged')
  const noCodeSent = await post(app, '/auth/verify', { ...body, verification_token: 'x'.repeat(43) })
  t.equal(noCodeSent.json().error.code, 'OTP_INVALID')

  t.equal((await sendCode(app, { email, purpose: 'signup' })).statusCode, 200)
  const taken = await post(app, '/auth/verify', { ...body, otp: lastCode(app, email, 'signup') })
  t.equal(taken.statusCode, 409)
  t.equal(taken.json().error.code, 'USER_NAME_TAKEN', 'with the right code, the name is judged')
  const ticket = taken.json().error.details?.verification_token
  t.type(ticket, 'string', 'a ticket stands for the spent code')

  const retried = await post(app, '/auth/verify', { ...body, user_name: 'free_name', verification_token: ticket })
  t.equal(retried.statusCode, 201, retried.body)
  t.equal(retried.json().data.user.user_name, 'free_name')
  const replay = await post(app, '/auth/verify', { email, password: strongPassword, verification_token: ticket })
  t.equal(replay.json().error.code, 'OTP_INVALID', 'the ticket works once')
})

t.test('SR-8: change-email spends the availability budget before it says EMAIL_TAKEN', async (t) => {
  const app = await build(t, { AVAILABILITY_RATE_LIMIT_PER_IP: '3', AUTH_RATE_LIMIT_PER_IP: '1000', AUTH_RATE_LIMIT_PER_IDENTIFIER: '100' })
  const caller = await createUser(app)
  const headers = bearer((await login(app, caller.email!)).access_token)
  for (let i = 0; i < 5; i++) await createUser(app, { email: `occupied-${i}@example.com` })

  const availability = await post(app, '/auth/check-user-availability', { email: 'occupied-0@example.com' })
  t.equal(availability.statusCode, 200)
  const statuses = []
  for (let i = 1; i < 5; i++) {
    const res = await post(app, '/settings/change-email', { new_email: `occupied-${i}@example.com` }, { headers })
    statuses.push(res.json().error.code)
  }
  t.same(statuses, ['EMAIL_TAKEN', 'EMAIL_TAKEN', 'RATE_LIMITED', 'RATE_LIMITED'], 'one budget with check-user-availability')
})

t.test('SR-8: change-phone spends the per-address limit before it says PHONE_TAKEN', async (t) => {
  const app = await build(t, { AVAILABILITY_RATE_LIMIT_PER_IP: '100', AUTH_RATE_LIMIT_PER_IP: '1000', AUTH_RATE_LIMIT_PER_IDENTIFIER: '2' })
  await createUser(app, { phone_number: '+14155550177' })
  const codes = []
  for (const [i, spelling] of ['+1 415 555 0177', '+1-415-555-0177', '14155550177'].entries()) {
    // Another caller each time: the limit is the address's, across accounts.
    const caller = await createUser(app)
    const headers = bearer((await login(app, caller.email!)).access_token)
    const res = await post(app, '/settings/change-phone', { new_phone_number: spelling }, { headers, remoteAddress: `10.6.0.${i + 1}` })
    codes.push(res.json().error.code)
  }
  t.same(codes, ['PHONE_TAKEN', 'PHONE_TAKEN', 'RATE_LIMITED'])
})
