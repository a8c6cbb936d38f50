import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { randomBytes } from 'node:crypto'
import t from 'tap'
import { and, count, eq } from 'drizzle-orm'
import { activityLog } from '../../db/schema/index.ts'
import { buildContext, stack } from '../helpers/build.ts'
import { bearer, createUser, login } from '../helpers/users.ts'
import { freePort, root } from '../helpers/processes.ts'
import { buildServer, keepAliveLoad } from '../helpers/keep-alive-load.ts'

/**
 * SR-42 under real PM2 (from npm): the built server in cluster mode, two
 * instances on PostgreSQL + Redis in production mode, reloaded three times
 * while keep-alive clients send GETs and authenticated POSTs without pause.
 * No request may fail, every POST's audit row must be committed, and every
 * process PM2 stops must exit 0 by itself.
 * RELOAD_TEST_SOURCE=<checkout> builds another checkout instead (to measure
 * an older commit: docs/performance.md).
 */

t.setTimeout(600_000)

const CONNECTIONS = 24
const LOAD_MS = 20_000
const RELOADS = 3
const prefix = '/api/v1'
const exec = promisify(execFile)
const pm2Bin = path.join(root, 'node_modules', 'pm2', 'bin', 'pm2')

const skip = stack === 'embedded' ? 'PM2 cluster mode needs the shared PostgreSQL + Redis stack; the embedded one is single-process' : false

t.test('pm2 reload under keep-alive load: no failed request, every audit row committed, exit 0', { skip }, async (t) => {
  const home = mkdtempSync(path.join(tmpdir(), 'pm2-reload-'))
  const pm2Env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, PM2_HOME: path.join(home, 'pm2') }
  const pm2 = async (...args: string[]) => (await exec(process.execPath, [pm2Bin, ...args], { env: pm2Env, maxBuffer: 16 * 1024 * 1024 })).stdout
  // Registered first so it runs last: the daemon and its processes are gone before the folders are removed.
  t.teardown(async () => {
    await pm2('kill').catch(() => {})
    rmSync(home, { recursive: true, force: true })
  })

  const [serverJs, ctx, port] = await Promise.all([
    buildServer(t, process.env.RELOAD_TEST_SOURCE || undefined),
    // No plugin timeout for the in-process app that only seeds users and counts rows: start-up on a loaded machine is slow.
    buildContext(t, { HASH_POOL_THREADS: '1' }, { serverOptions: { pluginTimeout: 0 } }),
    freePort()
  ])

  // The committed ecosystem file, pointed at the temporary build and the test's database.
  const require = createRequire(import.meta.url)
  const saved = { ...process.env }
  Object.assign(process.env, { WEB_CONCURRENCY: '2', PORT: String(port) })
  const ecosystemFile = path.join(root, 'ecosystem.config.cjs')
  delete require.cache[ecosystemFile]
  const [app] = (require(ecosystemFile) as { apps: Array<Record<string, any>> }).apps
  process.env = saved
  const name = `reload-test-${randomBytes(4).toString('hex')}`
  const processEnv: Record<string, string> = {
    ...ctx.env,
    ...app.env,
    LOG_LEVEL: 'warn',
    DATA_DIR: path.join(home, 'data'),
    // The template is migrated already, as a one-shot migrate job does it.
    DB_MIGRATE_ON_START: 'false',
    DB_POOL_MAX: '4',
    HASH_POOL_THREADS: '1',
    // One client address sends the whole load.
    RATE_LIMIT_MAX: '100000000',
    ACTIVITY_CLIENT_EVENTS_PER_MINUTE: '100000000'
  }
  t.equal(processEnv.NODE_ENV, 'production')
  t.equal(processEnv.CLUSTER_MODE, 'true')
  writeFileSync(path.join(home, 'ecosystem.json'), JSON.stringify({ apps: [{ ...app, name, script: serverJs, cwd: home, env: processEnv }] }))
  await pm2('start', path.join(home, 'ecosystem.json'))
  // If the test fails, PM2's own log and the processes' output say why.
  t.teardown(() => {
    if (t.passing()) return
    for (const file of ['pm2/pm2.log', `pm2/logs/${name}-out.log`, `pm2/logs/${name}-error.log`]) {
      try { console.error(`--- ${file} ---\n${readFileSync(path.join(home, file), 'utf8').split('\n').slice(-40).join('\n')}`) } catch {}
    }
  })

  const list = async () => (JSON.parse(await pm2('jlist')) as Array<{ name: string, pid: number, pm2_env: { status: string, restart_time: number, unstable_restarts: number, exit_code?: number } }>).filter((p) => p.name === name)
  const started = await list()
  t.same(started.map((p) => p.pm2_env.status), ['online', 'online'], 'two instances online (cluster mode, wait_ready)')

  const user = await createUser(ctx.app)
  const { access_token: token } = await login(ctx.app, user.email!)
  const action = `reload_probe_${randomBytes(3).toString('hex')}`
  const load = keepAliveLoad({
    origin: `http://127.0.0.1:${port}`,
    connections: CONNECTIONS,
    // An API GET: the probes (/health, /health/ready) answer 503 by design while an instance drains.
    get: { path: `${prefix}/health` },
    post: { path: `${prefix}/activity`, headers: bearer(token), body: () => ({ action, module: 'reload' }) }
  })

  const began = Date.now()
  await sleep(2_000)
  const reloadTimes: number[] = []
  for (let i = 0; i < RELOADS; i++) {
    const at = Date.now()
    await pm2('reload', name)
    reloadTimes.push(Date.now() - at)
  }
  await sleep(Math.max(0, LOAD_MS - (Date.now() - began)))
  const result = await load.stop()
  const loadMs = Date.now() - began
  t.comment(`${loadMs} ms of load on ${CONNECTIONS} connections; reloads took ${reloadTimes.join(', ')} ms; ${load.connects()} connections opened`)
  t.comment(JSON.stringify(result))

  t.ok(result.get.ok > 0 && result.post.ok > 0, `GETs (${result.get.ok}) and POSTs (${result.post.ok}) were answered`)
  t.same(result.failures, {}, 'no connection error and no non-2xx answer across the reloads')

  const reloaded = await list()
  t.same(reloaded.map((p) => p.pm2_env.status), ['online', 'online'])
  t.same(reloaded.map((p) => p.pm2_env.restart_time), [RELOADS, RELOADS], `each instance was replaced ${RELOADS} times`)
  t.notSame(reloaded.map((p) => p.pid).sort(), started.map((p) => p.pid).sort(), 'by new processes')
  t.ok(load.connects() > CONNECTIONS, 'the clients reconnected after the old processes said Connection: close')

  await pm2('stop', name)
  const stopped = await list()
  t.same(stopped.map((p) => p.pm2_env.status), ['stopped', 'stopped'])
  t.same(stopped.map((p) => p.pm2_env.exit_code), [0, 0], 'pm2 stop: each instance exited 0')
  t.same(stopped.map((p) => p.pm2_env.unstable_restarts), [0, 0], 'no crash restart')
  const exits = [...readFileSync(path.join(home, 'pm2', 'pm2.log'), 'utf8').matchAll(/App \[[^\]]+\] exited with code \[([^\]]*)\]/g)].map((m) => m[1])
  t.equal(exits.length, 2 * RELOADS + 2, 'PM2 logged the exit of every replaced and stopped process')
  t.same(exits.filter((code) => code !== '0'), [], 'all of them with code 0 (none hit the grace timeout or SIGKILL)')

  // The stopped processes flushed their buffered rows before exiting (SR-43).
  const [{ rows }] = await ctx.app.db.select({ rows: count() }).from(activityLog)
    .where(and(eq(activityLog.action, action), eq(activityLog.module, 'client.reload')))
  t.equal(rows, result.post.ok, `every answered POST has its committed audit row (${rows})`)
})
