import t from 'tap'
import { Writable } from 'node:stream'
import { build } from '../helpers/build.ts'
import { redactPaths } from '../../plugins/app/http/redact.ts'
import { loadConfig } from '../../config.ts'
import { banner, prettyTransport } from '../../startup.ts'

function capture () {
  const lines: Array<Record<string, unknown>> = []
  const stream = new Writable({ write (chunk, _encoding, done) { lines.push(JSON.parse(String(chunk))); done() } })
  return { lines, stream }
}

t.test('production logs one line per request, with method, route, status, duration and request id; probes are not logged', async (t) => {
  const { lines, stream } = capture()
  const app = await build(t, { NODE_ENV: 'production', METRICS_ENABLED: 'true', METRICS_TOKEN: 'startup-test-metrics-token' }, { serverOptions: { logger: { level: 'info', redact: { paths: redactPaths, censor: '[redacted]' }, stream } } })
  lines.length = 0
  const res = await app.inject({ url: '/api/v1/settings/profile?lang=fr', headers: { 'x-request-id': 'one-line-0001' } })
  t.equal(res.statusCode, 401)
  const mine = lines.filter((l) => l.reqId === 'one-line-0001')
  t.equal(mine.length, 1, 'one line for the request')
  t.match(mine[0], { msg: 'request', method: 'GET', route: '/api/v1/settings/profile', status: 401, duration_ms: Number })

  await app.inject({ url: '/no/such/route?x=1', headers: { 'x-request-id': 'one-line-0002' } })
  t.match(lines.filter((l) => l.reqId === 'one-line-0002'), [{ msg: 'request', route: null, url: '/no/such/route', status: 404 }], 'an unmatched URL is logged without its query')

  lines.length = 0
  for (const url of ['/health', '/health/ready', '/metrics']) t.equal((await app.inject({ url, headers: { authorization: 'Bearer startup-test-metrics-token' } })).statusCode, 200, url)
  t.same(lines, [], 'probes write nothing')
})

t.test('outside production the default request lines stay (development, tests)', async (t) => {
  const { lines, stream } = capture()
  const app = await build(t, {}, { serverOptions: { logger: { level: 'info', stream } } })
  await app.inject({ url: '/api/v1/settings/profile', headers: { 'x-request-id': 'two-lines-0001' } })
  t.same(lines.filter((l) => l.reqId === 'two-lines-0001').map((l) => l.msg), ['incoming request', 'request completed'])
})

t.test('pretty logs only on a terminal outside production', async (t) => {
  const development = loadConfig({ NODE_ENV: 'development' })
  t.match(prettyTransport(development, true), { transport: { target: 'pino-pretty' } }, 'a terminal in development')
  t.same(prettyTransport(development, false), {}, 'JSON when stdout is a pipe or a file')
  t.same(prettyTransport(loadConfig({ NODE_ENV: 'production', JWT_SECRET_KEY: 'x'.repeat(40), WEBAUTHN_RP_ID: 'localhost', WEBAUTHN_ORIGINS: 'http://localhost:3000' }), true), {}, 'JSON in production')
})

t.test('the development banner says where the API, Swagger UI and outbox are, and how to get an admin', async (t) => {
  const text = banner(loadConfig({ NODE_ENV: 'development', PORT: '3000', DATA_DIR: '/srv/data' }), 3000)
  t.match(text, 'http://localhost:3000/api/v1')
  t.match(text, 'http://localhost:3000/api-docs')
  t.match(text, '/srv/data/outbox')
  t.match(text, 'BOOTSTRAP_ADMIN_EMAIL')
  t.match(text, 'npm run create-admin')
  t.match(banner(loadConfig({ BOOTSTRAP_ADMIN_EMAIL: 'boss@example.com', BOOTSTRAP_ADMIN_PASSWORD: 'x'.repeat(20) }), 3001), 'boss@example.com (BOOTSTRAP_ADMIN_EMAIL)')
})
