import t from 'tap'
import { Socket } from 'node:net'
import { IncomingMessage, ServerResponse } from 'node:http'
import helmet from 'helmet'
import { build } from '../helpers/build.ts'
import { helmetOptions, securityHeaders } from '../../plugins/external/helmet.ts'

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

t.test('the static header set is what helmet itself sets for our policy, and errors carry it all (SR-31)', async (t) => {
  // helmet's own middleware on a real ServerResponse (no socket traffic).
  const request = new IncomingMessage(new Socket())
  const response = new ServerResponse(request)
  helmet(helmetOptions)(request, response, () => {})
  const expected = Object.fromEntries(Object.entries(response.getHeaders()).map(([k, v]) => [k, String(v)]))
  const computed = Object.fromEntries(Object.entries(securityHeaders()).map(([k, v]) => [k.toLowerCase(), v]))
  t.same(computed, expected, 'the same headers and values')
  t.ok(Object.keys(computed).length >= 10, 'a dozen headers')

  const app = await build(t)
  const answers = [
    await app.inject({ url: '/api/v1/settings/profile' }),
    await app.inject({ url: '/api/v1/settings/profile', headers: { authorization: 'Bearer x.y.z' } }),
    await app.inject({ method: 'POST', url: '/api/v1/auth/login-with-password', payload: { identifier: 1 } })
  ]
  t.same(answers.map((r) => r.statusCode), [401, 401, 400])
  for (const res of answers) {
    for (const [name, value] of Object.entries(expected)) t.equal(res.headers[name], value, `${res.statusCode} ${name}`)
  }
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

t.test('without an allow-list no origin gets CORS access, and a preflight is not granted (SR-32)', async (t) => {
  const app = await build(t, { CORS_ORIGINS: '' })
  const res = await app.inject({ url: '/api/v1/health', headers: { origin: 'https://app.example.com' } })
  t.equal(res.statusCode, 200)
  t.notOk(res.headers['access-control-allow-origin'])
  t.notOk(res.headers['access-control-allow-credentials'])
  const preflight = await app.inject({
    method: 'OPTIONS',
    url: '/api/v1/health',
    headers: { origin: 'https://app.example.com', 'access-control-request-method': 'GET' }
  })
  t.notOk(preflight.headers['access-control-allow-origin'], 'no preflight grant')
  t.equal(preflight.statusCode, 204, 'answered, not 405: the missing grant is what refuses it')
  t.equal(preflight.headers['x-frame-options'], 'DENY', 'with the security headers')
})
