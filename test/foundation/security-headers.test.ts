import t from 'tap'
import { build } from '../helpers/build.ts'

t.test('security headers on every response (SR-31)', async (t) => {
  const app = await build(t)
  for (const url of ['/health', '/api/v1/health', '/api/v1/nope']) {
    const res = await app.inject({ url })
    t.equal(res.headers['x-content-type-options'], 'nosniff', url)
    t.equal(res.headers['x-frame-options'], 'DENY', url)
    t.match(res.headers['content-security-policy'], /frame-ancestors 'none'/, url)
    t.equal(res.headers['referrer-policy'], 'no-referrer', url)
    t.notOk(res.headers['strict-transport-security'], `${url}: no HSTS over plain http`)
  }
  t.equal((await app.inject({ url: '/api/v1/health' })).headers['cache-control'], 'no-store', 'API answers are not cached')
})

t.test('HSTS when TLS is terminated by a trusted proxy, not when a client claims it', async (t) => {
  const trusting = await build(t, { TRUST_PROXY: '127.0.0.1' })
  const viaProxy = await trusting.inject({ url: '/health', headers: { 'x-forwarded-proto': 'https' } })
  t.match(viaProxy.headers['strict-transport-security'], /max-age=\d+/)
  const direct = await build(t)
  const spoofed = await direct.inject({ url: '/health', headers: { 'x-forwarded-proto': 'https' } })
  t.notOk(spoofed.headers['strict-transport-security'])
})

t.test('CORS from the allow-list only (SR-32)', async (t) => {
  const app = await build(t, { CORS_ORIGINS: 'https://app.example.com, https://admin.example.com' })
  const allowed = await app.inject({ url: '/api/v1/health', headers: { origin: 'https://app.example.com' } })
  t.equal(allowed.headers['access-control-allow-origin'], 'https://app.example.com')
  t.equal(allowed.headers['access-control-allow-credentials'], 'true')

  const foreign = await app.inject({ url: '/api/v1/health', headers: { origin: 'https://evil.example.net' } })
  t.equal(foreign.statusCode, 200, 'a foreign origin is not a 500')
  t.notOk(foreign.headers['access-control-allow-origin'])
  t.notOk(foreign.headers['access-control-allow-credentials'])

  const preflight = await app.inject({
    method: 'OPTIONS',
    url: '/api/v1/health/system',
    headers: { origin: 'https://admin.example.com', 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization,x-session-token' }
  })
  t.equal(preflight.statusCode, 204)
  t.equal(preflight.headers['access-control-allow-origin'], 'https://admin.example.com')
  t.match(preflight.headers['access-control-allow-headers'], /Authorization/)
  t.match(preflight.headers['access-control-allow-headers'], /X-Session-Token/)
})
