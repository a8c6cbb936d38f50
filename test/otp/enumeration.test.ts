import t from 'tap'
import { createUser } from '../helpers/users.ts'
import { codeIn } from '../helpers/smtp.ts'
import { build, fakeClock, lastCode, post, readOutbox, sendCode, strongPassword } from '../helpers/otp.ts'

// SR-8: OTP sends, sign-up, forget-password and login-with-otp answer alike for
// known and unknown accounts; SR-10: per-identifier and per-IP limits.
const clock = fakeClock()
const app = await build(t, { AUTH_RATE_LIMIT_PER_IP: '1000', AUTH_RATE_LIMIT_PER_IDENTIFIER: '100' }, { now: clock.now })
await createUser(app, { email: 'known@example.com', phone_number: '+14155550120' })

/** The parts of an answer that could tell accounts apart (not the request id or the time). */
const shape = (res: { statusCode: number, headers: Record<string, unknown>, json: () => any }) => {
  const body = res.json()
  return { status: res.statusCode, success: body.success, message: body.message ?? body.error?.message, code: body.error?.code, data: body.data, keys: Object.keys(body).sort() }
}

t.test('SR-8: login and reset_password codes: the same answer for known and unknown addresses', async (t) => {
  for (const purpose of ['login', 'reset_password']) {
    clock.advance(61_000)
    const forKnown = await sendCode(app, { email: 'known@example.com', purpose })
    const forUnknown = await sendCode(app, { email: 'unknown@example.com', purpose })
    t.equal(forKnown.statusCode, 200)
    t.same(shape(forUnknown), { ...shape(forKnown), data: { ...shape(forKnown).data, destination: 'u***@example.com' } }, purpose)
    t.same(Object.keys(forUnknown.headers).sort(), Object.keys(forKnown.headers).sort(), 'same headers')
    const phoneKnown = await sendCode(app, { phone_number: '+14155550120', purpose })
    const phoneUnknown = await sendCode(app, { phone_number: '+14155550199', purpose })
    t.same({ ...shape(phoneUnknown), data: undefined }, { ...shape(phoneKnown), data: undefined })
  }
  const outbox = readOutbox(app)
  t.equal(outbox.filter((m) => m.to === 'known@example.com').length, 2, 'the known address got its codes')
  t.equal(outbox.filter((m) => m.to === 'unknown@example.com' || m.to === '+14155550199').length, 0, 'the unknown ones got nothing')
})

t.test('SR-8: sign-up codes: the same answer for a free and a taken address; the owner of a taken one gets a notice, no code', async (t) => {
  clock.advance(61_000)
  const taken = await sendCode(app, { email: 'known@example.com', purpose: 'signup' })
  const free = await sendCode(app, { email: 'brand-new@example.com', purpose: 'signup' })
  t.same({ ...shape(taken), data: undefined }, { ...shape(free), data: undefined })
  const notice = readOutbox(app).filter((m) => m.to === 'known@example.com').pop()!
  t.equal(notice.template, 'signup_attempt')
  t.notOk(codeIn(notice.text), 'the notice carries no code')
  t.match(notice.text, /already has an account/)
  const attempt = await post(app, '/auth/verify', { email: 'known@example.com', otp: '000000', password: strongPassword })
  t.equal(attempt.json().error.code, 'OTP_INVALID', 'no code exists to take over the address')
})

t.test('SR-8: login-with-otp and forget-password fail alike for unknown accounts and wrong codes', async (t) => {
  clock.advance(61_000)
  await sendCode(app, { email: 'known@example.com', purpose: 'login' })
  const right = lastCode(app, 'known@example.com', 'login')
  const guess = right === '123456' ? '654321' : '123456'
  const wrongCode = await post(app, '/auth/login-with-otp', { email: 'known@example.com', otp: guess })
  const unknown = await post(app, '/auth/login-with-otp', { email: 'nobody@example.com', otp: guess })
  t.equal(wrongCode.statusCode, 400)
  t.same(shape(unknown), shape(wrongCode))

  const resetWrong = await post(app, '/auth/forget-password', { email: 'known@example.com', otp: guess, new_password: strongPassword })
  const resetUnknown = await post(app, '/auth/forget-password', { email: 'nobody@example.com', otp: guess, new_password: strongPassword })
  t.equal(resetWrong.json().error.code, 'OTP_INVALID')
  t.same(shape(resetUnknown), shape(resetWrong))
})

t.test('SR-8: check-user-availability tells, and is limited per IP', async (t) => {
  const limited = await build(t, { AVAILABILITY_RATE_LIMIT_PER_IP: '3' })
  await createUser(limited, { email: 'taken@example.com', user_name: 'TakenName', phone_number: '+14155550121' })
  const check = (payload: object, remoteAddress = '10.5.0.1') => post(limited, '/auth/check-user-availability', payload, { remoteAddress })
  const answer = await check({ email: 'TAKEN@example.com', user_name: 'takenname', phone_number: '+1 415 555 0121' })
  t.equal(answer.statusCode, 200, answer.body)
  t.same(answer.json().data, {
    email: { value: 'taken@example.com', available: false },
    phone_number: { value: '+14155550121', available: false },
    user_name: { value: 'takenname', available: false }
  })
  t.same((await check({ email: 'free@example.com' })).json().data, { email: { value: 'free@example.com', available: true } })
  t.equal((await check({})).json().error.code, 'VALIDATION_ERROR')
  const fourth = await check({ user_name: 'another' })
  t.equal(fourth.statusCode, 429, 'the fourth request of the minute from one IP is refused')
  t.equal(fourth.json().error.code, 'RATE_LIMITED')
  t.ok(Number(fourth.headers['retry-after']) > 0)
  t.equal((await check({ user_name: 'another' }, '10.5.0.2')).statusCode, 200, 'another IP has its own budget')
})

t.test('SR-10: per-identifier limits on OTP send, OTP verify, reset and sign-up, across IPs', async (t) => {
  const tight = await build(t, { AUTH_RATE_LIMIT_PER_IDENTIFIER: '3', AUTH_RATE_LIMIT_PER_IP: '1000', OTP_RESEND_COOLDOWN_SECONDS: '0' })
  const ip = (i: number) => ({ remoteAddress: `10.6.0.${i}` })
  const statuses = async (call: (i: number) => Promise<{ statusCode: number }>) => {
    const out: number[] = []
    for (let i = 1; i <= 4; i++) out.push((await call(i)).statusCode)
    return out
  }
  t.same(await statuses((i) => sendCode(tight, { email: 'victim@example.com', purpose: 'signup' }, ip(i))), [200, 200, 200, 429], 'send')
  t.same(await statuses((i) => post(tight, '/auth/verify-one-time-password', { email: 'victim@example.com', purpose: 'signup', otp: '000000' }, ip(i))), [400, 400, 400, 429], 'verify')
  t.same(await statuses((i) => post(tight, '/auth/forget-password', { email: 'victim2@example.com', otp: '000000', new_password: strongPassword }, ip(i))), [400, 400, 400, 429], 'reset')
  t.same(await statuses((i) => post(tight, '/auth/verify', { email: 'victim3@example.com', otp: '000000', password: strongPassword }, ip(i))), [400, 400, 400, 429], 'sign-up')
  t.same(await statuses((i) => post(tight, '/auth/login-with-otp', { email: 'victim4@example.com', otp: '000000' }, ip(i))), [400, 400, 400, 429], 'login-with-otp')
})

t.test('SR-10: per-IP limits on the OTP routes', async (t) => {
  const perIp = await build(t, { AUTH_RATE_LIMIT_PER_IP: '2', AUTH_RATE_LIMIT_PER_IDENTIFIER: '1000' })
  for (const [url, payload] of [
    ['/auth/send-one-time-password', (i: number) => ({ email: `ip-${i}@example.com`, purpose: 'signup' })],
    ['/auth/verify-one-time-password', (i: number) => ({ email: `ip-${i}@example.com`, purpose: 'signup', otp: '000000' })],
    ['/auth/login-with-otp', (i: number) => ({ email: `ip-${i}@example.com`, otp: '000000' })],
    ['/auth/verify', (i: number) => ({ email: `ip-${i}@example.com`, otp: '000000', password: strongPassword })],
    ['/auth/forget-password', (i: number) => ({ email: `ip-${i}@example.com`, otp: '000000', new_password: strongPassword })]
  ] as const) {
    const out: number[] = []
    for (let i = 0; i < 3; i++) out.push((await post(perIp, url, payload(i), { remoteAddress: '10.7.0.1' })).statusCode)
    t.equal(out[2], 429, `${url}: the third request of the minute from one IP is refused (${out.join(', ')})`)
  }
})
