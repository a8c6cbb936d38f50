import t from 'tap'
import pino from 'pino'
import type { FastifyInstance } from 'fastify'
import { eq } from 'drizzle-orm'
import { user } from '../../db/schema/index.ts'
import { SmtpCapture, codeIn } from '../helpers/smtp.ts'
import { TwilioCapture } from '../helpers/twilio.ts'
import { createUser } from '../helpers/users.ts'
import { auditRows, build, fakeClock, lastCode, post, readOutbox, sendCode, storeDump } from '../helpers/otp.ts'

// Delivery through a real SMTP server and a Twilio stand-in (SR-15, SR-16).
const smtp = await new SmtpCapture().start()
const twilio = await new TwilioCapture().start()
t.teardown(() => smtp.stop())
t.teardown(() => twilio.stop())

/** Every log line the app writes from now on (pino's destination, shared by all child loggers). */
function captureLogs (app: FastifyInstance): string[] {
  const lines: string[] = []
  const destination = (app.log as unknown as Record<symbol, { write: (chunk: string) => boolean }>)[pino.symbols.streamSym]
  destination.write = (chunk: string) => { lines.push(chunk); return true }
  return lines
}

/** Every error handed to the error reporter (Sentry when configured). */
function captureReports (app: FastifyInstance): string[] {
  const reports: string[] = []
  app.reportError = (error: unknown) => {
    const e = error as Error & { cause?: Error }
    reports.push(JSON.stringify({ message: e.message, stack: e.stack, cause: e.cause?.message, causeStack: e.cause?.stack }))
  }
  return reports
}

const clock = fakeClock()
const env = { ...smtp.env(), ...twilio.env(), LOG_LEVEL: 'trace', AUTH_RATE_LIMIT_PER_IP: '1000', AUTH_RATE_LIMIT_PER_IDENTIFIER: '100' }
const app = await build(t, env, { now: clock.now })

t.test('SR-16: an SMTP refusal is a 502 OTP_DELIVERY_FAILED and leaves no valid code', async (t) => {
  smtp.rejectRecipients = true
  const failed = await sendCode(app, { email: 'bounce@example.com', purpose: 'signup' })
  smtp.rejectRecipients = false
  t.equal(failed.statusCode, 502)
  t.equal(failed.json().error.code, 'OTP_DELIVERY_FAILED')
  t.notOk((await storeDump(app)).some(([key]) => key.startsWith('otp:c:')), 'no code record was stored')
  t.equal((await auditRows(app, 'otp_delivery_failed')).length, 1)
  const retry = await sendCode(app, { email: 'bounce@example.com', purpose: 'signup' })
  t.equal(retry.statusCode, 200, 'a failed delivery does not start the resend cooldown')
  const mail = await smtp.waitFor((m) => m.to.includes('bounce@example.com'))
  t.equal((await post(app, '/auth/verify-one-time-password', { email: 'bounce@example.com', purpose: 'signup', otp: codeIn(mail.text) })).statusCode, 200)
})

t.test('SR-15, SR-16: a Twilio error is a 502; the code reaches no log, report, audit row or response', async (t) => {
  const logs = captureLogs(app)
  const reports = captureReports(app)
  // A provider error that echoes the message back: the code must still be scrubbed everywhere.
  twilio.failWith = { status: 400, code: 21610, message: (body) => `Message refused: ${body}` }
  const failed = await sendCode(app, { phone_number: '+14155550101', purpose: 'signup' })
  twilio.failWith = undefined
  t.equal(failed.statusCode, 502)
  t.equal(failed.json().error.code, 'OTP_DELIVERY_FAILED')
  const leaked = codeIn(twilio.attempts.at(-1)!.body)!
  t.match(leaked, /^\d{6}$/, 'the provider did receive a code')
  t.equal((await post(app, '/auth/verify-one-time-password', { phone_number: '+14155550101', purpose: 'signup', otp: leaked })).json().error.code, 'OTP_INVALID',
    'a code that could not be sent is not valid')

  clock.advance(61_000)
  const sent = await sendCode(app, { phone_number: '+14155550101', purpose: 'signup' })
  t.equal(sent.statusCode, 200)
  const code = codeIn(twilio.to('+14155550101').at(-1)!.body)!
  const checked = await post(app, '/auth/verify-one-time-password', { phone_number: '+14155550101', purpose: 'signup', otp: code })
  t.equal(checked.statusCode, 200)
  await app.notify.settled()

  t.ok(logs.length > 5, 'the log capture works')
  t.ok(logs.some((l) => /message delivery failed/.test(l)), 'the failure is logged')
  t.ok(reports.length >= 1, 'the 502 is reported')
  t.ok(reports.some((r) => /\[redacted\]/.test(r)), 'with the echoed code redacted')
  const audit = JSON.stringify(await Promise.all(['otp_sent', 'otp_verified', 'otp_failed', 'otp_delivery_failed'].map((a) => auditRows(app, a))))
  for (const secret of [leaked, code]) {
    t.notOk(logs.some((l) => l.includes(secret)), `no log line holds ${secret}`)
    t.notOk(reports.some((r) => r.includes(secret)), 'no error report holds it')
    t.notOk(audit.includes(secret), 'no audit row holds it')
    for (const res of [failed, sent, checked]) t.notOk(res.body.includes(secret), 'no response holds it')
  }
})

t.test('SMS and WhatsApp go through Twilio with the configured senders', async (t) => {
  clock.advance(61_000)
  t.equal((await sendCode(app, { phone_number: '+14155550102', purpose: 'signup', channel: 'whatsapp' })).statusCode, 200)
  const whatsapp = await twilio.waitFor((m) => m.to === 'whatsapp:+14155550102')
  t.equal(whatsapp.from, 'whatsapp:+14155238886')
  t.match(whatsapp.body, /^\d{6} is your Auth API code/)

  clock.advance(61_000)
  const sms = await sendCode(app, { phone_number: '+1 415 555 0102', purpose: 'signup' })
  t.equal(sms.json().data.channel, 'sms')
  const text = await twilio.waitFor((m) => m.to === '+14155550102')
  t.equal(text.from, '+15005550006')

  const invalid = await sendCode(app, { phone_number: '+1 555', purpose: 'signup' })
  t.equal(invalid.statusCode, 400)
  t.equal(invalid.json().error.code, 'INVALID_PHONE')
  const mismatch = await sendCode(app, { email: 'a@example.com', purpose: 'signup', channel: 'sms' })
  t.equal(mismatch.json().error.code, 'VALIDATION_ERROR')
})

t.test('a messaging service replaces the sender number', async (t) => {
  const service = await build(t, { ...twilio.env({ TWILIO_MESSAGING_SERVICE_ID: 'MG0123456789abcdef0123456789abcdef' }), TWILIO_PHONE_NUMBER: '', TWILIO_WHATSAPP_NUMBER: '' })
  t.equal(service.notify.transports.sms, 'twilio')
  t.equal(service.notify.transports.whatsapp, 'twilio')
  await sendCode(service, { phone_number: '+14155550103', purpose: 'signup' })
  const message = await twilio.waitFor((m) => m.to === '+14155550103')
  t.equal(message.messagingServiceSid, 'MG0123456789abcdef0123456789abcdef')
  t.equal(message.from, undefined)
})

t.test('messages speak the language of the request, or of the account', async (t) => {
  clock.advance(61_000)
  await sendCode(app, { email: 'francais@example.com', purpose: 'signup' }, { headers: { 'accept-language': 'fr-FR,fr;q=0.9' } })
  const french = await smtp.waitFor((m) => m.to.includes('francais@example.com'))
  t.equal(french.subject, 'Votre code de vérification Auth API')
  t.match(french.text, /Utilisez ce code pour terminer la création/)
  t.match(french.html, /<html lang="fr" dir="ltr">/)

  await sendCode(app, { email: 'arabic@example.com', purpose: 'signup' }, { headers: { 'accept-language': 'ar' } })
  const arabic = await smtp.waitFor((m) => m.to.includes('arabic@example.com'))
  t.match(arabic.html, /<html lang="ar" dir="rtl">/)
  t.match(arabic.subject, /رمز التحقق/)

  const german = await createUser(app, { email: 'deutsch@example.com' })
  await app.db.update(user).set({ language: 'de' }).where(eq(user.user_id, german.user_id))
  await sendCode(app, { email: 'deutsch@example.com', purpose: 'login' }, { headers: { 'accept-language': 'en' } })
  const mail = await smtp.waitFor((m) => m.to.includes('deutsch@example.com'))
  t.equal(mail.subject, 'Ihr Bestätigungscode für Auth API', 'an account gets its saved language')
})

t.test('without transports: the development outbox, one file per message, a log line without the code', async (t) => {
  const dev = await build(t, { LOG_LEVEL: 'info' })
  t.same(dev.notify.transports, { email: 'outbox', sms: 'outbox', whatsapp: 'outbox' })
  const logs = captureLogs(dev)
  t.equal((await sendCode(dev, { email: 'dev@example.com', purpose: 'signup' })).statusCode, 200)
  t.equal((await sendCode(dev, { phone_number: '+14155550104', purpose: 'signup', channel: 'whatsapp' })).statusCode, 200)
  const [mail, whatsapp] = readOutbox(dev)
  t.match(mail, { to: 'dev@example.com', channel: 'email', subject: 'Your Auth API verification code', template: 'otp', purpose: 'signup' })
  t.match(mail.created_at, /^\d{4}-\d\d-\d\dT/)
  t.match(mail.html, /<!doctype html>/)
  t.match(whatsapp, { to: '+14155550104', channel: 'whatsapp', subject: 'Your Auth API verification code' })
  const codes = [lastCode(dev, 'dev@example.com'), lastCode(dev, '+14155550104')]
  const outboxLines = logs.filter((l) => /development outbox/.test(l))
  t.equal(outboxLines.length, 2, 'one log line per message')
  for (const code of codes) t.notOk(logs.some((l) => l.includes(code)), 'the code is only in the file')
})

t.test('SR-16: in production, a channel without a transport fails instead of writing an outbox', async (t) => {
  const production = await build(t, { NODE_ENV: 'production' })
  t.same(production.notify.transports, { email: 'disabled', sms: 'disabled', whatsapp: 'disabled' })
  const res = await sendCode(production, { email: 'prod@example.com', purpose: 'signup' })
  t.equal(res.statusCode, 502)
  t.equal(res.json().error.code, 'OTP_DELIVERY_FAILED')
  t.same(readOutbox(production), [])
})

t.test('a failing notice never fails the change it reports', async (t) => {
  const account = await createUser(app, { email: 'notice-fails@example.com' })
  smtp.rejectRecipients = true
  const first = await post(app, '/auth/login-with-password', { identifier: account.email!, password: 'correct horse battery staple' }, { headers: { 'user-agent': 'curl/8.0' } })
  const second = await post(app, '/auth/login-with-password', { identifier: account.email!, password: 'correct horse battery staple' }, { headers: { 'user-agent': 'Wget/1.21' } })
  const changed = await post(app, '/auth/change-password', { current_password: 'correct horse battery staple', new_password: 'notices may fail passphrase' }, { headers: { authorization: `Bearer ${second.json().data.access_token as string}` } })
  await app.notify.settled()
  smtp.rejectRecipients = false
  t.equal(first.statusCode, 200)
  t.equal(second.statusCode, 200, 'a new-device login succeeds although its notice bounced')
  t.equal(changed.statusCode, 200, 'a password change succeeds although its notice bounced')
  t.same(smtp.to('notice-fails@example.com'), [])
})
