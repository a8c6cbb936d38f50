import t from 'tap'
import http from 'node:http'
import { gunzipSync } from 'node:zlib'
import type { AddressInfo } from 'node:net'
import { build } from '../helpers/build.ts'
import { scrub } from '../../plugins/external/sentry.ts'

/**
 * SR-33 for error reports: with SENTRY_DSN pointed at a local HTTP endpoint
 * standing in for Sentry's ingest API, an unexpected error is reported once,
 * tagged with the request id, and carries no token, password, OTP or body.
 */
async function sentryEndpoint (t: { teardown: (fn: () => unknown) => void }) {
  const envelopes: string[] = []
  let arrived: () => void = () => {}
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const raw = Buffer.concat(chunks)
      envelopes.push((req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw).toString('utf8'))
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
      arrived()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  const { port } = server.address() as AddressInfo
  return {
    dsn: `http://publickey@127.0.0.1:${port}/42`,
    envelopes,
    next: () => new Promise<void>((resolve) => { arrived = resolve })
  }
}

t.test('SR-33: an unexpected error reaches Sentry scrubbed, with the request id', async (t) => {
  const sentry = await sentryEndpoint(t)
  const secret = 'super-secret-bearer-value-123456'
  const app = await build(t, { SENTRY_DSN: sentry.dsn, SENTRY_ENVIRONMENT: 'test' }, {
    plugins: [async (instance) => {
      instance.post('/boom', { config: { public: true } }, async () => { throw new Error('kaboom in a handler') })
    }]
  })
  const arrived = sentry.next()
  const res = await app.inject({
    method: 'POST',
    url: '/boom',
    headers: { authorization: `Bearer ${secret}`, cookie: `sid=${secret}`, 'x-session-token': secret, 'x-request-id': 'sentry-test-request-1' },
    payload: { password: secret, otp: '123456', note: 'hello' }
  })
  t.equal(res.statusCode, 500)
  t.equal(res.json().error.code, 'INTERNAL_ERROR')
  t.notMatch(res.body, /kaboom/, 'the client sees no internal message')
  await Promise.race([arrived, new Promise((resolve, reject) => setTimeout(() => reject(new Error('no event reached the endpoint in 10 s')), 10_000))])
  const all = sentry.envelopes.join('\n')
  t.match(all, /kaboom in a handler/, 'the error is reported')
  t.match(all, /sentry-test-request-1/, 'tagged with the request id')
  t.notMatch(all, new RegExp(secret), 'no token, cookie or password value')
  t.notMatch(all, /123456/, 'no OTP')
})

t.test('scrub() redacts secret keys at any depth and keeps the rest', async (t) => {
  t.same(scrub({ authorization: 'Bearer x', nested: { refresh_token: 'y', list: [{ otp: '1' }], ok: 'z' } }), {
    authorization: '[redacted]',
    nested: { refresh_token: '[redacted]', list: [{ otp: '[redacted]' }], ok: 'z' }
  })
})

t.test('without SENTRY_DSN reporting is a no-op', async (t) => {
  const app = await build(t)
  t.doesNotThrow(() => app.reportError(new Error('nowhere')))
})
