import { createRequire } from 'node:module'
import path from 'node:path'
import t from 'tap'
import { ConfigSchema } from '../../config.ts'
import { root } from '../helpers/processes.ts'

/**
 * The PM2 ecosystem file: cluster mode with graceful reload. Real PM2 runs it
 * (three reloads under keep-alive load) in test/deploy/pm2-reload.test.ts.
 */

const require = createRequire(import.meta.url)
const load = (env: Record<string, string | undefined> = {}) => {
  const file = path.join(root, 'ecosystem.config.cjs')
  const saved = { ...process.env }
  Object.assign(process.env, env)
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete process.env[k]
  try {
    delete require.cache[file]
    return (require(file) as { apps: Array<Record<string, any>> }).apps
  } finally {
    process.env = saved
  }
}

t.test('cluster mode with graceful reload', async (t) => {
  const [app, ...others] = load({ SHUTDOWN_GRACE_MS: undefined, WEB_CONCURRENCY: undefined })
  t.equal(others.length, 0, 'one app')
  t.equal(app.exec_mode, 'cluster')
  t.equal(app.instances, 'max', 'one process per core by default')
  t.equal(app.script, 'dist/server.js', 'the compiled server (`npm run build`)')
  t.equal(app.cwd, root, 'runs from the project folder, where .env is')
  t.equal(app.wait_ready, true, 'a new process gets traffic only after it sent `ready` (server.ts, after listen)')
  t.ok(app.listen_timeout >= 10_000, 'and has time to start')

  const grace = Number(app.env.SHUTDOWN_GRACE_MS)
  t.equal(grace, (ConfigSchema.properties.SHUTDOWN_GRACE_MS as { default: number }).default, 'the server\'s default grace')
  t.ok(app.kill_timeout > grace, 'PM2 waits longer than the server\'s own grace before SIGKILL')

  t.equal(app.env.NODE_ENV, 'production')
  t.equal(app.env.CLUSTER_MODE, 'true', 'several processes: in-process stores are refused')
  t.equal(app.env.HOST, '127.0.0.1', 'only Caddy on the same host reaches the processes')
  t.match(app.env.TRUST_PROXY, /127\.0\.0\.1/, 'and only its X-Forwarded-For is believed')
  const known = new Set(Object.keys(ConfigSchema.properties))
  t.same(Object.keys(app.env).filter((k) => !known.has(k)), [], 'every env name is a setting the server reads')
})

t.test('the kill timeout follows SHUTDOWN_GRACE_MS and the process count WEB_CONCURRENCY', async (t) => {
  const [app] = load({ SHUTDOWN_GRACE_MS: '20000', WEB_CONCURRENCY: '3' })
  t.equal(app.env.SHUTDOWN_GRACE_MS, '20000')
  t.ok(app.kill_timeout > 20_000)
  t.equal(app.instances, 3)
})
