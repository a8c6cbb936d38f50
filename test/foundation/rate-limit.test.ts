import t from 'tap'
import { build } from '../helpers/build.ts'

t.test('global per-IP limit answers 429 with Retry-After and the envelope (SR-10)', async (t) => {
  const app = await build(t, { RATE_LIMIT_MAX: '3' })
  for (let i = 0; i < 3; i++) t.equal((await app.inject({ url: '/api/v1/health', remoteAddress: '10.0.0.1' })).statusCode, 200)
  const limited = await app.inject({ url: '/api/v1/health', remoteAddress: '10.0.0.1' })
  t.equal(limited.statusCode, 429)
  t.ok(Number(limited.headers['retry-after']) >= 1, 'Retry-After set')
  t.equal(limited.json().error.code, 'RATE_LIMITED')
  t.equal((await app.inject({ url: '/api/v1/health', remoteAddress: '10.0.0.2' })).statusCode, 200, 'other IPs unaffected')
  t.equal((await app.inject({ url: '/health', remoteAddress: '10.0.0.1' })).statusCode, 200, 'liveness probes are not limited')
})

t.test('X-Forwarded-For is honoured only from trusted proxies (SR-10)', async (t) => {
  const untrusting = await build(t, { RATE_LIMIT_MAX: '2' })
  for (let i = 0; i < 2; i++) await untrusting.inject({ url: '/api/v1/health', remoteAddress: '10.0.0.9', headers: { 'x-forwarded-for': `192.0.2.${i}` } })
  const spoof = await untrusting.inject({ url: '/api/v1/health', remoteAddress: '10.0.0.9', headers: { 'x-forwarded-for': '192.0.2.77' } })
  t.equal(spoof.statusCode, 429, 'a client cannot pick a fresh bucket by sending X-Forwarded-For')

  const trusting = await build(t, { RATE_LIMIT_MAX: '2', TRUST_PROXY: '10.0.0.0/8' })
  for (let i = 0; i < 2; i++) await trusting.inject({ url: '/api/v1/health', remoteAddress: '10.0.0.5', headers: { 'x-forwarded-for': '198.51.100.1' } })
  t.equal((await trusting.inject({ url: '/api/v1/health', remoteAddress: '10.0.0.5', headers: { 'x-forwarded-for': '198.51.100.1' } })).statusCode, 429, 'the real client is limited')
  t.equal((await trusting.inject({ url: '/api/v1/health', remoteAddress: '10.0.0.5', headers: { 'x-forwarded-for': '198.51.100.2' } })).statusCode, 200, 'another client behind the same proxy is not')
})

t.test('requests without valid credentials count against the global limit too (SR-10)', async (t) => {
  // Authentication settles after the rate-limit hook has counted the request, so a
  // client guessing tokens is limited like any other.
  const app = await build(t, { RATE_LIMIT_MAX: '3' })
  for (let i = 0; i < 3; i++) {
    const res = await app.inject({ url: '/api/v1/settings/profile', remoteAddress: '10.0.0.3', headers: { authorization: `Bearer not-a-token-${i}` } })
    t.equal(res.statusCode, 401)
  }
  const limited = await app.inject({ url: '/api/v1/settings/profile', remoteAddress: '10.0.0.3', headers: { authorization: 'Bearer not-a-token-4' } })
  t.equal(limited.statusCode, 429)
  t.equal(limited.json().error.code, 'RATE_LIMITED')
})
