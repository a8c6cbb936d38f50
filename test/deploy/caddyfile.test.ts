import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import { caddyInstalled, root } from '../helpers/processes.ts'

/**
 * The committed Caddyfile, checked with the real `caddy` binary (Debian 12's
 * 2.6.2 here): it validates, it is formatted, and the JSON it adapts to has
 * the properties the deployment relies on. test/e2e/ runs it for real.
 */

const caddyfile = path.join(root, 'Caddyfile')
const upstreams = ['127.0.0.1:3101', '127.0.0.1:3102']
const home = mkdtempSync(path.join(tmpdir(), 'caddy-check-'))
t.teardown(() => rmSync(home, { recursive: true, force: true }))

function caddy (args: string[], env: Record<string, string | undefined> = {}) {
  const result = spawnSync('caddy', args, {
    cwd: home,
    encoding: 'utf8',
    timeout: 30_000,
    env: { PATH: process.env.PATH, HOME: home, XDG_DATA_HOME: home, XDG_CONFIG_HOME: home, API_UPSTREAMS: upstreams.join(' '), ...env }
  })
  return { status: result.status, stdout: result.stdout, stderr: result.stderr }
}

const skip = caddyInstalled() ? false : 'caddy is not installed (apt-get install caddy; .ci/run installs it)'

t.test('caddy validate accepts the Caddyfile', { skip }, async (t) => {
  const ok = caddy(['validate', '--adapter', 'caddyfile', '--config', caddyfile])
  t.equal(ok.status, 0, 'valid with the env of the end-to-end test', { stderr: ok.stderr })
  const https = caddy(['validate', '--adapter', 'caddyfile', '--config', caddyfile], { SITE_ADDRESS: 'api.example.com' })
  t.equal(https.status, 0, 'valid as a TLS site (SITE_ADDRESS=a domain)', { stderr: https.stderr })
  const missing = caddy(['validate', '--adapter', 'caddyfile', '--config', caddyfile], { API_UPSTREAMS: undefined })
  t.not(missing.status, 0, 'an unset API_UPSTREAMS is refused, not a proxy to nowhere')
  const formatted = caddy(['fmt', caddyfile])
  t.equal(formatted.stdout, readFileSync(caddyfile, 'utf8'), 'the file is as `caddy fmt` writes it')
})

t.test('what the Caddyfile configures', { skip }, async (t) => {
  const adapted = caddy(['adapt', '--adapter', 'caddyfile', '--config', caddyfile], { SITE_ADDRESS: ':8080', MAX_BODY_BYTES: '1000', CADDY_ADMIN: 'off' })
  t.equal(adapted.status, 0, 'adapts to JSON', { stderr: adapted.stderr })
  const config = JSON.parse(adapted.stdout)
  const server = config.apps.http.servers.srv0
  t.same(server.listen, [':8080'], 'SITE_ADDRESS decides where it listens')
  t.same(config.admin, { disabled: true }, 'CADDY_ADMIN=off turns the admin endpoint off')
  t.notOk(server.trusted_proxies, 'Caddy trusts no proxy: a client\'s X-Forwarded-For is replaced by its real address')

  const handlers = server.routes.flatMap((r: { handle: Array<Record<string, any>> }) => r.handle)
  const proxy = handlers.find((h: { handler: string }) => h.handler === 'reverse_proxy')
  t.same(proxy.upstreams, upstreams.map((dial) => ({ dial })), 'one upstream per API_UPSTREAMS entry')
  t.equal(proxy.load_balancing.selection_policy.policy, 'round_robin')
  t.ok(proxy.load_balancing.try_duration > 0 && proxy.load_balancing.try_interval > 0, 'failed attempts are retried on another instance')
  t.equal(proxy.health_checks.active.uri, '/health', 'active health checks on GET /health')
  t.ok(proxy.health_checks.active.interval > 0)
  // Go durations in nanoseconds. A draining instance fails the probe while it still serves
  // for SHUTDOWN_DRAIN_MS / 2 (2.5 s by default); the probe must notice well within that.
  t.ok(proxy.health_checks.active.interval <= 1e9, 'SR-42: probed at least every second, so a draining instance is out before it refuses connections')
  t.ok(proxy.health_checks.passive.fail_duration > 0 && proxy.health_checks.passive.max_fails >= 1, 'passive health checks take a failing instance out')
  t.ok(proxy.transport.dial_timeout > 0, 'a dead instance is given up on quickly')

  const encode = handlers.find((h: { handler: string }) => h.handler === 'encode')
  t.same(Object.keys(encode.encodings).sort(), ['gzip', 'zstd'])
  t.same(encode.prefer, ['zstd', 'gzip'])

  const headers = handlers.filter((h: { handler: string }) => h.handler === 'headers').map((h: Record<string, any>) => h.response).filter(Boolean)
  const set = Object.assign({}, ...headers.map((r: { set?: object }) => r.set ?? {}))
  t.same(set['X-Content-Type-Options'], ['nosniff'])
  t.same(set['X-Frame-Options'], ['DENY'])
  t.ok(set['Referrer-Policy'] && set['Content-Security-Policy'], 'referrer policy and CSP defaults')
  t.ok(headers.some((r: { delete?: string[] }) => r.delete?.includes('Server')), 'no Server header')

  const limit = server.routes.find((r: { match?: Array<{ expression?: string }> }) => r.match?.[0]?.expression?.includes('Content-Length'))
  t.match(limit.match[0].expression, /> 1000$/, 'MAX_BODY_BYTES bounds the declared body size')
  t.match(JSON.stringify(limit.handle), /"handler":"error","status_code":413/, 'answered 413')
  t.match(JSON.stringify(server.errors.routes), /PAYLOAD_TOO_LARGE[^]*SERVICE_UNAVAILABLE/, 'Caddy\'s own errors use the API\'s error codes')

  const accessLog = config.logging.logs[server.logs.default_logger_name]
  t.equal(accessLog.encoder.wrap.format, 'json', 'the access log is JSON')
  t.same(accessLog.encoder.fields['request>headers>X-Session-Token'], { filter: 'delete' }, 'and drops the session-token header')
})

t.test('MAX_BODY_BYTES must be a number', { skip }, async (t) => {
  const bad = caddy(['validate', '--adapter', 'caddyfile', '--config', caddyfile], { MAX_BODY_BYTES: '25MB' })
  // It is compared with Content-Length in a CEL expression: "25MB" does not compile there.
  t.not(bad.status, 0, 'a unit suffix is refused at validation, not at request time')
})
