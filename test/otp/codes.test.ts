import t from 'tap'
import { buildContext, stack } from '../helpers/build.ts'
import { auditRows, build, fakeClock, lastCode, post, readOutbox, sendCode, storeDump, strongPassword } from '../helpers/otp.ts'

// One-time passwords through the development outbox (no transport configured).
const clock = fakeClock()
const app = await build(t, { AUTH_RATE_LIMIT_PER_IP: '1000', AUTH_RATE_LIMIT_PER_IDENTIFIER: '100' }, { now: clock.now })
const verify = (email: string, otp: string, purpose = 'signup') => post(app, '/auth/verify-one-time-password', { email, otp, purpose })
const wrong = (code: string) => String((Number(code) + 1) % 1_000_000).padStart(6, '0')

t.test('SR-11: six CSPRNG digits, stored only as a keyed hash', async (t) => {
  const addresses = Array.from({ length: 6 }, (_, i) => `sr11-${i}@example.com`)
  for (const email of addresses) {
    const res = await sendCode(app, { email, purpose: 'signup' })
    t.equal(res.statusCode, 200, res.body)
  }
  const codes = addresses.map((email) => lastCode(app, email, 'signup'))
  for (const code of codes) t.match(code, /^\d{6}$/)
  t.ok(new Set(codes).size > 1, 'codes differ')
  const dump = JSON.stringify(await storeDump(app))
  for (const code of codes) t.notOk(dump.includes(code), 'no code in the store, in keys or values')
  t.notOk(dump.includes('sr11-0'), 'no address in the store either')
  t.match(dump, /otp:c:/, 'the code records are there')
})

t.test('SR-11: OTP_LENGTH sets the number of digits', async (t) => {
  const long = await build(t, { OTP_LENGTH: '8' })
  t.equal((await sendCode(long, { email: 'eight@example.com', purpose: 'signup' })).statusCode, 200)
  const text = readOutbox(long).pop()!.text
  t.match(text, /(?<!\d)\d{8}(?!\d)/)
})

t.test('SR-12: single use', async (t) => {
  await sendCode(app, { email: 'once@example.com', purpose: 'signup' })
  const code = lastCode(app, 'once@example.com')
  const first = await verify('once@example.com', code)
  t.equal(first.statusCode, 200)
  t.match(first.json().data.verification_token, /^[\w-]{43}$/)
  const again = await verify('once@example.com', code)
  t.equal(again.statusCode, 400)
  t.equal(again.json().error.code, 'OTP_INVALID')
})

t.test('SR-12: a new code replaces the previous one', async (t) => {
  await sendCode(app, { email: 'resend@example.com', purpose: 'signup' })
  const old = lastCode(app, 'resend@example.com')
  let current = old
  // Two random codes are equal once in a million: resend until they differ.
  while (current === old) {
    clock.advance(61_000)
    await sendCode(app, { email: 'resend@example.com', purpose: 'signup' })
    current = lastCode(app, 'resend@example.com')
  }
  t.equal((await verify('resend@example.com', old)).json().error.code, 'OTP_INVALID', 'the old code is dead')
  t.equal((await verify('resend@example.com', current)).statusCode, 200, 'the new one works')
})

t.test(`SR-12: ${5} wrong guesses burn the code; four do not`, async (t) => {
  await sendCode(app, { email: 'guess4@example.com', purpose: 'signup' })
  const survivor = lastCode(app, 'guess4@example.com')
  for (let i = 0; i < 4; i++) t.equal((await verify('guess4@example.com', wrong(survivor))).statusCode, 400)
  t.equal((await verify('guess4@example.com', survivor)).statusCode, 200, 'the fifth attempt, correct, passes')

  await sendCode(app, { email: 'guess5@example.com', purpose: 'signup' })
  const burned = lastCode(app, 'guess5@example.com')
  for (let i = 0; i < 5; i++) t.equal((await verify('guess5@example.com', wrong(burned))).json().error.code, 'OTP_INVALID')
  const late = await verify('guess5@example.com', burned)
  t.equal(late.statusCode, 400, 'after five wrong guesses even the right code fails')
  t.equal(late.json().error.code, 'OTP_INVALID')
})

t.test('SR-14: a code works for its own purpose and destination only', async (t) => {
  await sendCode(app, { email: 'purpose@example.com', purpose: 'signup' })
  const code = lastCode(app, 'purpose@example.com')
  t.equal((await verify('purpose@example.com', code, 'login')).json().error.code, 'OTP_INVALID', 'not for login')
  t.equal((await verify('purpose@example.com', code, 'reset_password')).json().error.code, 'OTP_INVALID', 'not for reset_password')
  t.equal((await verify('other@example.com', code)).json().error.code, 'OTP_INVALID', 'not for another address')
  const login = await post(app, '/auth/login-with-otp', { email: 'purpose@example.com', otp: code })
  t.equal(login.json().error.code, 'OTP_INVALID', 'not for login-with-otp')
  t.equal((await verify('purpose@example.com', code)).statusCode, 200, 'and still good for its own purpose')
})

t.test('SR-12: only one of concurrent checks of the right code wins', async (t) => {
  await sendCode(app, { email: 'race@example.com', purpose: 'signup' })
  const code = lastCode(app, 'race@example.com')
  const answers = await Promise.all(Array.from({ length: 5 }, () => verify('race@example.com', code)))
  t.same(answers.map((a) => a.statusCode).sort(), [200, 400, 400, 400, 400])
})

t.test('the verification token stands for the code once, for its purpose and address', async (t) => {
  await sendCode(app, { email: 'ticket@example.com', purpose: 'signup' })
  const checked = await verify('ticket@example.com', lastCode(app, 'ticket@example.com'))
  const token = checked.json().data.verification_token as string
  t.same(checked.json().data.purpose, 'signup')
  t.equal((await post(app, '/auth/login-with-otp', { email: 'ticket@example.com', verification_token: token })).json().error.code, 'OTP_INVALID', 'not for another purpose')
  t.equal((await post(app, '/auth/verify', { email: 'tacket@example.com', verification_token: token, password: strongPassword })).json().error.code, 'OTP_INVALID', 'not for another address')
  const created = await post(app, '/auth/verify', { email: 'ticket@example.com', verification_token: token, password: strongPassword })
  t.equal(created.statusCode, 201, created.body)
  const reused = await post(app, '/auth/verify', { email: 'ticket@example.com', verification_token: token, password: strongPassword })
  t.equal(reused.json().error.code, 'OTP_INVALID', 'single use')
  const both = await post(app, '/auth/verify', { email: 'ticket@example.com', verification_token: token, otp: '123456', password: strongPassword })
  t.equal(both.json().error.code, 'VALIDATION_ERROR', 'a code or a token, not both')
})

t.test('SR-38: sends and checks are audited, never with the code', async (t) => {
  await sendCode(app, { email: 'audit@example.com', purpose: 'signup' }, { headers: { 'x-request-id': 'otp-audit-request-1' } })
  const code = lastCode(app, 'audit@example.com')
  await verify('audit@example.com', wrong(code))
  await verify('audit@example.com', code)
  const sent = (await auditRows(app, 'otp_sent')).filter((r) => r.request_id === 'otp-audit-request-1')
  t.equal(sent.length, 1)
  t.match(sent[0].metadata, { purpose: 'signup', channel: 'email', destination: 'a***@example.com' })
  t.ok(sent[0].ip_address)
  const failed = (await auditRows(app, 'otp_failed')).filter((r) => (r.metadata as { destination?: string }).destination === 'a***@example.com')
  t.equal(failed.length, 1)
  t.equal((failed[0].metadata as { reason: string }).reason, 'mismatch')
  t.ok((await auditRows(app, 'otp_verified')).length >= 1)
  const everything = JSON.stringify(await Promise.all(['otp_sent', 'otp_failed', 'otp_verified', 'signup'].map((a) => auditRows(app, a))))
  t.notOk(everything.includes(code), 'the code is in no audit row')
})

t.test('SR-11: the hash is keyed by the server secret', { skip: stack === 'postgres' ? false : 'needs two instances sharing one Redis' }, async (t) => {
  // HS256: an instance under another secret could not decrypt the database's signing key
  // pair and would refuse to start (signing-keys.ts); what is shown here is the OTP hash.
  const ctx = await buildContext(t, { LOAD_SHED_EVENT_LOOP_DELAY_MS: '0', JWT_ALGORITHM: 'HS256' })
  await sendCode(ctx.app, { email: 'keyed@example.com', purpose: 'signup' })
  const code = lastCode(ctx.app, 'keyed@example.com')
  const otherSecret = await ctx.another({ JWT_SECRET_KEY: 'another-secret-of-at-least-thirty-two-chars' })
  const sameSecret = await ctx.another()
  const check = (instance: typeof app) => post(instance, '/auth/verify-one-time-password', { email: 'keyed@example.com', purpose: 'signup', otp: code })
  t.equal((await check(otherSecret)).json().error.code, 'OTP_INVALID', 'an instance with another secret cannot check the code')
  t.equal((await check(sameSecret)).statusCode, 200, 'an instance with the same secret (a cluster) can')
})
