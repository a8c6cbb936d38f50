import http from 'node:http'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { build } from '../helpers/build.ts'
import { bearer, createUser, login } from '../helpers/users.ts'
import { caddyInstalled, startCaddy } from '../helpers/processes.ts'
import { apiDocsEnabled, loadConfig } from '../../config.ts'

/**
 * Production exposure: /metrics answers only to METRICS_TOKEN (and in
 * production exists only with one), /api-docs can be turned off and is off in
 * production by default, and the shipped Caddyfile never proxies /metrics
 * (nor /api-docs unless told to).
 */

const metricsToken = 'metrics-token-of-the-scraper-0123'

t.test('METRICS_TOKEN: /metrics needs Authorization: Bearer <token>; API_DOCS_ENABLED=false hides the docs', async (t) => {
  const app = await build(t, { METRICS_ENABLED: 'true', METRICS_TOKEN: metricsToken, API_DOCS_ENABLED: 'false' })

  const none = await app.inject('/metrics')
  t.equal(none.statusCode, 401)
  t.equal(none.json().error.code, 'AUTH_REQUIRED', 'the error envelope, not metrics')
  t.notMatch(none.body, /process_cpu/)

  for (const authorization of [`Bearer ${metricsToken}x`, `Bearer ${metricsToken.slice(0, -1)}`, 'Bearer x', `Basic ${metricsToken}`, metricsToken]) {
    const wrong = await app.inject({ url: '/metrics', headers: { authorization } })
    t.equal(wrong.statusCode, 401, `refused: ${authorization.slice(0, 12)}…`)
    t.notMatch(wrong.body, /process_cpu/)
  }
  // The API's own tokens, even an administrator's, are no metrics credential.
  const admin = await createUser(app, { groups: ['super_admin'] })
  const userToken = await app.inject({ url: '/metrics', headers: bearer((await login(app, admin.email!)).access_token) })
  t.equal(userToken.statusCode, 401)

  const ok = await app.inject({ url: '/metrics', headers: { authorization: `Bearer ${metricsToken}` } })
  t.equal(ok.statusCode, 200)
  t.match(ok.body, /# TYPE process_cpu_user_seconds_total counter/)
  const lowerCase = await app.inject({ url: '/metrics', headers: { authorization: `bearer  ${metricsToken}` } })
  t.equal(lowerCase.statusCode, 200, 'the scheme is case-insensitive (RFC 7235)')

  for (const url of ['/api-docs', '/api-docs/json', '/api-docs/static/swagger-initializer.js']) {
    const docs = await app.inject(url)
    t.equal(docs.statusCode, 404, `${url} is not served`)
    t.equal(docs.json().error.code, 'NOT_FOUND')
  }
})

t.test('production: no METRICS_TOKEN, no /metrics; docs off unless API_DOCS_ENABLED=true', async (t) => {
  const app = await build(t, { NODE_ENV: 'production', METRICS_ENABLED: 'true' })
  const metrics = await app.inject('/metrics')
  t.equal(metrics.statusCode, 404)
  t.equal(metrics.json().error.code, 'NOT_FOUND')
  t.equal((await app.inject('/api-docs/json')).statusCode, 404, 'docs are off by default in production')

  t.equal(apiDocsEnabled(loadConfig({})), true, 'on by default in development')
  t.equal(apiDocsEnabled(loadConfig({ NODE_ENV: 'test' })), true)
  t.equal(apiDocsEnabled(loadConfig({ NODE_ENV: 'production', JWT_SECRET_KEY: 'x'.repeat(32), WEBAUTHN_RP_ID: 'localhost', WEBAUTHN_ORIGINS: 'http://localhost:3000' })), false)
  t.equal(apiDocsEnabled(loadConfig({ NODE_ENV: 'production', JWT_SECRET_KEY: 'x'.repeat(32), API_DOCS_ENABLED: 'true', WEBAUTHN_RP_ID: 'localhost', WEBAUTHN_ORIGINS: 'http://localhost:3000' })), true, 'an operator may turn them on')
  t.throws(() => loadConfig({ METRICS_TOKEN: 'short' }), { name: 'ConfigError' }, 'a guessable metrics token is refused')
})

/** Stands in for the API instances: answers 200 to everything and records what reached it. */
async function upstream (t: { teardown: (fn: () => unknown) => void }) {
  const reached: string[] = []
  const server = http.createServer((req, res) => {
    reached.push(req.url ?? '')
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"from":"upstream"}')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }))
  return { address: `127.0.0.1:${(server.address() as AddressInfo).port}`, reached }
}

const skip = caddyInstalled() ? false : 'caddy is not installed (apt-get install caddy; .ci/run installs it)'

t.test('the Caddyfile answers 404 for /metrics and, unless API_DOCS_ENABLED=true, for /api-docs', { skip }, async (t) => {
  const api = await upstream(t)
  const caddy = await startCaddy(t, { upstreams: [api.address], env: { HEALTH_INTERVAL: '1s' } })
  const get = async (path: string) => {
    const res = await fetch(`${caddy.url}${path}`, { headers: { authorization: `Bearer ${metricsToken}` } })
    return { status: res.status, body: await res.text() }
  }

  for (const path of ['/metrics', '/metrics/', '/metrics?format=text', '/METRICS', '/%6Detrics', '/metrics/x', '/api-docs', '/api-docs/json', '/api-docs/static/index.html']) {
    const res = await get(path)
    t.equal(res.status, 404, `${path}: 404`)
    t.equal(JSON.parse(res.body).error.code, 'NOT_FOUND', `${path}: in the API's error envelope`)
  }
  t.notOk(api.reached.some((url) => /metrics|api-docs/i.test(decodeURIComponent(url))), 'none of them reached an instance')

  const proxied = await get('/api/v1/health')
  t.equal(proxied.status, 200, 'everything else is proxied')
  t.match(proxied.body, /upstream/)
  t.equal((await get('/metricsx')).status, 200, 'only the endpoint itself is held back')

  const withDocs = await startCaddy(t, { upstreams: [api.address], env: { HEALTH_INTERVAL: '1s', API_DOCS_ENABLED: 'true' } })
  const docs = await fetch(`${withDocs.url}/api-docs/json`)
  t.equal(docs.status, 200, 'API_DOCS_ENABLED=true lets the docs through')
  t.equal((await fetch(`${withDocs.url}/metrics`)).status, 404, '/metrics stays held back')
})

t.test('SR-33: Caddy\'s access log hides the secret query values the API\'s log hides', { skip }, async (t) => {
  const api = await upstream(t)
  const caddy = await startCaddy(t, { upstreams: [api.address], env: { HEALTH_INTERVAL: '1s' } })
  const secret = 'eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.c2lnbmF0dXJl'
  await (await fetch(`${caddy.url}/api/v1/users?access_token=${secret}&limit=5`)).text()
  await (await fetch(`${caddy.url}/api/v1/upload/files/media/a.png?expires=1&signature=${secret}`)).text()
  t.ok(api.reached.some((url) => url.includes(secret)), 'the request itself reaches the instance unchanged')
  const deadline = Date.now() + 5000
  while (caddy.accessLog.filter((l) => JSON.stringify(l).includes('/api/v1/')).length < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100))
  const entries = caddy.accessLog.filter((l) => JSON.stringify(l).includes('/api/v1/'))
  t.equal(entries.length, 2, 'both requests are in the access log')
  for (const entry of entries) {
    const text = JSON.stringify(entry)
    t.notOk(text.includes(secret), 'no secret in the entry')
    t.match(text, /redacted/, 'the value is replaced')
  }
  t.match(JSON.stringify(entries[0]), /limit=5/, 'other parameters stay')
})
