import t from 'tap'
import { stack } from '../helpers/build.ts'
import { PrivateRedis } from '../helpers/redis-server.ts'
import { codeIn } from '../helpers/smtp.ts'
import { build, post, readOutbox, sendCode } from '../helpers/otp.ts'

// SR-41: with the store down, OTPs fail closed (503) and nothing is sent.
t.test('SR-41: OTP send and check fail closed while Redis is down', { skip: stack === 'postgres' ? false : 'the embedded stack has an in-process store, which cannot go down' }, async (t) => {
  const redis = new PrivateRedis()
  await redis.start()
  t.teardown(() => redis.stop())
  const app = await build(t, { REDIS_URL: redis.url })
  t.equal((await sendCode(app, { email: 'before@example.com', purpose: 'signup' })).statusCode, 200)
  const code = codeIn(readOutbox(app).pop()!.text)!

  await redis.stop()
  const send = await sendCode(app, { email: 'during@example.com', purpose: 'signup' })
  t.equal(send.statusCode, 503)
  t.equal(send.json().error.code, 'SERVICE_UNAVAILABLE')
  t.equal(readOutbox(app).length, 1, 'nothing was sent while the limits could not be checked')
  const check = await post(app, '/auth/verify-one-time-password', { email: 'before@example.com', purpose: 'signup', otp: code })
  t.equal(check.statusCode, 503, 'a check does not pass without the store')
})
