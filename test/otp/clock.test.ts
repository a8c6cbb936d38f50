import t from 'tap'
import { createUser } from '../helpers/users.ts'
import { build, fakeClock, lastCode, post, readOutbox, sendCode } from '../helpers/otp.ts'

// Time-dependent rules, driven by a fake clock (build(t, env, { now })): nothing sleeps.
// The clock starts on a fixed UTC morning so a run of sends never crosses midnight by accident.
const start = Date.UTC(new Date().getUTCFullYear() + 1, 0, 10, 8, 0, 0)
const clock = fakeClock(start)
const app = await build(t, { AUTH_RATE_LIMIT_PER_IP: '1000', AUTH_RATE_LIMIT_PER_IDENTIFIER: '1000' }, { now: clock.now })
const verify = (email: string, otp: string) => post(app, '/auth/verify-one-time-password', { email, otp, purpose: 'signup' })

t.test('SR-12: a code lives 10 minutes', async (t) => {
  await sendCode(app, { email: 'alive@example.com', purpose: 'signup' })
  const alive = lastCode(app, 'alive@example.com')
  clock.advance(599_000)
  t.equal((await verify('alive@example.com', alive)).statusCode, 200, 'at 9:59 it works')

  await sendCode(app, { email: 'expired@example.com', purpose: 'signup' })
  const expired = lastCode(app, 'expired@example.com')
  clock.advance(600_000)
  const late = await verify('expired@example.com', expired)
  t.equal(late.statusCode, 400, 'at 10:00 it is gone')
  t.equal(late.json().error.code, 'OTP_INVALID', 'with the same code as any other failure')
})

t.test('SR-13: one code per destination per cooldown, across IPs', async (t) => {
  const email = 'cooldown@example.com'
  t.equal((await sendCode(app, { email, purpose: 'signup' }, { remoteAddress: '10.3.0.1' })).statusCode, 200)
  clock.advance(30_000)
  const early = await sendCode(app, { email, purpose: 'signup' }, { remoteAddress: '10.3.0.2' })
  t.equal(early.statusCode, 429, 'another IP is held back too')
  t.equal(early.json().error.code, 'OTP_COOLDOWN')
  t.equal(early.headers['retry-after'], '30')
  const otherPurpose = await sendCode(app, { email, purpose: 'login' }, { remoteAddress: '10.3.0.3' })
  t.equal(otherPurpose.json().error.code, 'OTP_COOLDOWN', 'and another purpose')
  t.equal((await sendCode(app, { email: 'someone-else@example.com', purpose: 'signup' }, { remoteAddress: '10.3.0.2' })).statusCode, 200, 'other destinations are not affected')
  clock.advance(29_000)
  t.equal((await sendCode(app, { email, purpose: 'signup' })).statusCode, 429, 'at 59 s still held')
  clock.advance(1_000)
  t.equal((await sendCode(app, { email, purpose: 'signup' })).statusCode, 200, 'at 60 s a new code goes out')
})

t.test('SR-13: a daily cap per destination, across IPs, that resets at UTC midnight', async (t) => {
  const email = 'daily@example.com'
  for (let i = 0; i < 10; i++) {
    const res = await sendCode(app, { email, purpose: 'signup' }, { remoteAddress: `10.4.0.${i + 1}` })
    t.equal(res.statusCode, 200, `send ${i + 1}`)
    clock.advance(61_000)
  }
  const capped = await sendCode(app, { email, purpose: 'signup' }, { remoteAddress: '10.4.1.1' })
  t.equal(capped.statusCode, 429)
  t.equal(capped.json().error.code, 'OTP_DAILY_LIMIT')
  const untilMidnight = Math.ceil((Date.UTC(new Date(clock.at).getUTCFullYear(), 0, 11) - clock.at) / 1000)
  t.equal(Number(capped.headers['retry-after']), untilMidnight, 'Retry-After points at the next UTC midnight')
  t.equal(readOutbox(app).filter((m) => m.to === email).length, 10, 'the eleventh was not sent')

  clock.at = Date.UTC(new Date(clock.at).getUTCFullYear(), 0, 11, 0, 0, 1)
  t.equal((await sendCode(app, { email, purpose: 'signup' })).statusCode, 200, 'a new UTC day, a new budget')
})

t.test('SR-8, SR-13: requests for unknown accounts count alike (no send, same limits)', async (t) => {
  const ghost = 'ghost@example.com'
  const known = (await createUser(app, { email: 'known-daily@example.com' })).email!
  for (let i = 0; i < 10; i++) {
    t.equal((await sendCode(app, { email: ghost, purpose: 'login' })).statusCode, 200)
    t.equal((await sendCode(app, { email: known, purpose: 'login' })).statusCode, 200)
    clock.advance(61_000)
  }
  const ghostCapped = await sendCode(app, { email: ghost, purpose: 'login' })
  const knownCapped = await sendCode(app, { email: known, purpose: 'login' })
  t.equal(ghostCapped.statusCode, 429)
  t.equal(ghostCapped.json().error.code, knownCapped.json().error.code)
  t.equal(ghostCapped.headers['retry-after'], knownCapped.headers['retry-after'])
  t.equal(readOutbox(app).filter((m) => m.to === ghost).length, 0, 'nothing was ever sent to the unknown address')
  t.equal(readOutbox(app).filter((m) => m.to === known).length, 10)
})

t.test('SR-23: set-password needs a login of the last REAUTH_WINDOW_MINUTES', async (t) => {
  const account = await createUser(app, { email: 'nopass@example.com', password: null })
  await sendCode(app, { email: account.email!, purpose: 'login' })
  const login = await post(app, '/auth/login-with-otp', { email: account.email!, otp: lastCode(app, account.email!, 'login') })
  t.equal(login.statusCode, 200, login.body)
  const headers = { authorization: `Bearer ${login.json().data.access_token as string}` }
  clock.advance(10 * 60_000 + 1_000)
  const stale = await post(app, '/auth/set-password', { password: 'late but strong passphrase' }, { headers })
  t.equal(stale.statusCode, 403)
  t.equal(stale.json().error.code, 'AUTH_REAUTH_REQUIRED')
  clock.advance(61_000)
  await sendCode(app, { email: account.email!, purpose: 'login' })
  const again = await post(app, '/auth/login-with-otp', { email: account.email!, otp: lastCode(app, account.email!, 'login') })
  const fresh = await post(app, '/auth/set-password', { password: 'late but strong passphrase' }, { headers: { authorization: `Bearer ${again.json().data.access_token as string}` } })
  t.equal(fresh.statusCode, 200, fresh.body)
  t.equal(fresh.json().data.has_password, true)
})
