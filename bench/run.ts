/**
 * `npm run bench`: the scenarios of issue 9 (and the bench part of issue 6),
 * each next to the bare-Fastify route measured right before it in the same run.
 *
 * Stack: PostgreSQL + Redis on 127.0.0.1 when they answer (a scratch database
 * and a Redis key prefix of its own, removed afterwards), else the embedded
 * defaults; `npm run bench:embedded` (BENCH_STACK=embedded) forces the latter.
 *
 * Two API processes, one after the other, on the same data:
 *   A: HASH_POOL_THREADS=2, ACTIVITY_LOG_REQUESTS=true   (idle RSS, reads, login, /health under login load, logging on)
 *   B: HASH_POOL_THREADS=1, ACTIVITY_LOG_REQUESTS=false  (logging off, login on one core, the activity list)
 *
 * A signs with HS256 (JWT_ALGORITHM=HS256), so its rows compare with earlier runs;
 * `access-eddsa` starts, after A's scenarios, three short-lived APIs for the same
 * access-token read: EdDSA (the default) with fast-jwt's verified-token cache, EdDSA
 * without it and HS256 without it (JWT_VERIFY_CACHE_SIZE=0; the cached HS256 read is
 * A's `access` row). The load repeats one token, so the cached rows show a resource
 * server's steady state and the uncached ones the cost of the signature check itself.
 *
 * The API runs compiled (tsconfig.build.json into a temporary folder), as
 * `npm run start:prod` does; BENCH_FROM_SOURCE=1 runs server.ts under tsx.
 *
 * Environment: BENCH_DURATION (seconds per measurement, default 5),
 * BENCH_CONNECTIONS (default 50), BENCH_ONLY (comma-separated scenario ids:
 * health, session, access, access-eddsa, users, login, health-under-login,
 * activity-logging, activity-list), BENCH_ACTIVITY_ROWS (default 1,000,000 on PostgreSQL,
 * 250,000 embedded), BENCH_PROBE_RATE (req/s of /health under login load, default 200).
 *
 * Prints a results table and a targets table (informative: the exit code is 0
 * unless the bench itself failed) and writes bench/results/latest.json.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { login, loginUser, requests, type RequestSpec } from './lib/api.ts'
import { buildApi, type Build } from './lib/build.ts'
import { measure, measureTogether, warmUp, type Load, type Measured } from './lib/load.ts'
import { rssMb } from './lib/proc.ts'
import { IDLE_THREAD_MS } from '../plugins/app/auth/passwords.ts'
import { environment, resultsTable, round, row, targetsTable, type Row, type SoakResult, type Target } from './lib/report.ts'
import { resultsDir, startApi, startBaseline, type Server } from './lib/servers.ts'
import { seedActivity, seedLoginUser, seedUsers } from './lib/seed.ts'
import { selectStack, type Stack } from './lib/stack.ts'

const scenarioIds = ['health', 'session', 'access', 'access-eddsa', 'users', 'login', 'health-under-login', 'activity-logging', 'activity-list'] as const
type ScenarioId = typeof scenarioIds[number]

const duration = Number(process.env.BENCH_DURATION ?? 5)
const connections = Number(process.env.BENCH_CONNECTIONS ?? 50)
const loginConnections = 8
const probeRate = Number(process.env.BENCH_PROBE_RATE ?? 200)
const probeConnections = 4
const seededUsers = 1000
const fromSource = process.env.BENCH_FROM_SOURCE === '1'
const only = process.env.BENCH_ONLY?.split(',').map((s) => s.trim()).filter(Boolean)
const unknown = only?.filter((id) => !(scenarioIds as readonly string[]).includes(id)) ?? []
if (unknown.length > 0) {
  console.error(`BENCH_ONLY: unknown scenario ${unknown.join(', ')}; known: ${scenarioIds.join(', ')}`)
  process.exit(2)
}
const wanted = (id: ScenarioId) => !only || only.includes(id)

const log = (message: string) => console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}`)
const load = (spec: RequestSpec, extra: Partial<Load> = {}): Load => ({ ...spec, connections, duration, ...extra })
const bare: RequestSpec = { path: '/' }

const rows: Row[] = []

/**
 * How long A must have gone without a request before its idle RSS is read: its hash
 * threads are gone by then. BENCH_SETTLE_SECONDS=0 skips that reading (quick runs).
 */
const settleMs = process.env.BENCH_SETTLE_SECONDS !== undefined ? Number(process.env.BENCH_SETTLE_SECONDS) * 1000 : IDLE_THREAD_MS + 5000

/** The median of five RSS readings a second apart (single readings move with each garbage collection). */
async function medianRss (pid: number): Promise<number> {
  const samples: number[] = []
  for (let i = 0; i < 5; i++) {
    if (i > 0) await sleep(1000)
    samples.push(rssMb(pid))
  }
  return samples.sort((x, y) => x - y)[2]
}

/**
 * Measures the baseline with the same connections and rate as `api`, then
 * `api`; records the pair. Not `comparable`: the ratio means nothing (login).
 */
async function scenario (id: ScenarioId, name: string, baseline: Server, server: Server, serverLabel: string, api: Load, comparable = true): Promise<Row> {
  const base = await measure(baseline, { ...bare, connections: api.connections, rate: api.rate, duration: api.duration })
  const measured = await measure(server, api)
  const result = row(id, name, serverLabel, measured, base, comparable)
  rows.push(result)
  log(`${name}: ${measured.requestsPerSecond} req/s, p99 ${measured.p99} ms, ${measured.cpuMicrosPerRequest} µs CPU/req (baseline ${base.requestsPerSecond} req/s)`)
  return result
}

interface Phase { label: string, server: Server, reqs: ReturnType<typeof requests>, readyRssMb: number }

/** Rounds of the activity-logging toggle on POST /auth/token-info (the target's figure). */
const toggleRounds = Number(process.env.BENCH_TOGGLE_ROUNDS ?? 3)

/** `route` on A (request logging on) and B (off), alternating for `rounds` rounds; records the median round of each. */
async function toggled (route: string, baseline: Server, [on, off]: [Phase, Phase], spec: (p: Phase) => RequestSpec, rounds: number): Promise<void> {
  const runs: Record<'on' | 'off', Array<{ api: Measured, base: Measured }>> = { on: [], off: [] }
  for (let round = 0; round < rounds; round++) {
    for (const [side, phase] of [['on', on], ['off', off]] as const) {
      const api = load(spec(phase))
      const base = await measure(baseline, { ...bare, connections: api.connections, duration: api.duration })
      runs[side].push({ api: await measure(phase.server, api), base })
    }
  }
  for (const [side, phase] of [['on', on], ['off', off]] as const) {
    const sorted = [...runs[side]].sort((x, y) => x.api.requestsPerSecond - y.api.requestsPerSecond)
    const median = sorted[Math.floor((sorted.length - 1) / 2)]
    const label = `${route}, request logging ${side}${rounds > 1 ? ` (median of ${rounds} rounds: ${runs[side].map((r) => r.api.requestsPerSecond).join(', ')} req/s)` : ''}`
    rows.push(row('activity-logging', label, phase === on ? 'A' : 'B', median.api, median.base))
    log(`${label}: ${median.api.requestsPerSecond} req/s, ${median.api.cpuMicrosPerRequest} µs CPU/req`)
  }
}

async function startPhase (name: string, label: string, stack: Stack, env: Record<string, string>, build: Build | undefined): Promise<Phase> {
  log(`starting API ${label}`)
  const server = await startApi(name, { ...stack.env, ...env }, build?.entry)
  const readyRssMb = rssMb(server.pid)
  const warmReqs = requests(await login(server))
  const warm: RequestSpec[] = [warmReqs.health, warmReqs.sessionRead, warmReqs.accessRead, warmReqs.userList, warmReqs.tokenInfo, warmReqs.updateTheme]
  if (wanted('activity-list')) warm.push(warmReqs.activityFirstPage, warmReqs.activityFiltered)
  await warmUp(server, warm)
  if (wanted('login') || wanted('health-under-login')) await warmUp(server, [warmReqs.login], 20)
  // The warm-up's update-theme changed the profile, so the session token above now
  // carries a stale snapshot (its reads go to the database, as they should). A client
  // gets a current one with its next login or refresh: measure with such a token.
  const reqs = requests(await login(server))
  return { label, server, reqs, readyRssMb }
}

async function main (): Promise<void> {
  const stack = await selectStack({ embedded: process.env.BENCH_STACK === 'embedded' })
  const servers: Server[] = []
  const building = fromSource ? Promise.resolve(undefined) : buildApi()
  building.catch(() => { /* awaited below */ })
  const shutdown = async () => {
    await Promise.all(servers.map((s) => s.stop()))
    await stack.dispose()
    ;(await building.catch(() => undefined))?.dispose()
  }
  const onSignal = () => { log('interrupted, cleaning up'); shutdown().catch(() => {}).finally(() => process.exit(130)) }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)

  const activityRows = Number(process.env.BENCH_ACTIVITY_ROWS ?? (stack.postgres ? 1_000_000 : 250_000))
  const env = environment()
  log(`stack: ${stack.label} (${stack.scratch})`)
  log(`${duration} s per measurement, ${connections} connections; Node ${env.node}; ${env.cpu}; load average ${env.loadAverage.join(' ')}`)
  log(fromSource ? 'API: server.ts under tsx (BENCH_FROM_SOURCE=1)' : 'API: compiled like `npm run build`, run like `npm run start:prod` (compiling meanwhile)')

  let idleRssMb: number | undefined
  let readyRssMb: number | undefined
  let settledRssMb: number | undefined
  const notes: string[] = []
  try {
    const baseline = await startBaseline()
    servers.push(baseline)

    log(`preparing the database: migrations, ${seededUsers} users${wanted('activity-list') ? `, ${activityRows.toLocaleString('en')} activity rows` : ''}`)
    const started = Date.now()
    const handle = await stack.open()
    try {
      await seedUsers(handle, seededUsers)
      await seedLoginUser(handle, loginUser.email, loginUser.password)
      if (wanted('activity-list')) await seedActivity(handle, activityRows)
    } finally {
      await handle.close()
    }
    log(`database ready in ${round((Date.now() - started) / 1000, 1)} s`)
    const build = await building
    if (wanted('activity-list') && activityRows !== 1_000_000) {
      notes.push(`GET /activity was measured on ${activityRows.toLocaleString('en')} activity rows, not 1,000,000${stack.postgres ? '' : ' (seeding PGlite takes minutes; BENCH_ACTIVITY_ROWS=1000000 to insist)'}.`)
    }

    // --- API A: two hash threads, request logging on ------------------------------
    const a = await startPhase('api-A', 'A (HASH_POOL_THREADS=2, ACTIVITY_LOG_REQUESTS=true, JWT_ALGORITHM=HS256)', stack, { HASH_POOL_THREADS: '2', ACTIVITY_LOG_REQUESTS: 'true', JWT_ALGORITHM: 'HS256' }, build)
    servers.push(a.server)
    await sleep(2000)
    idleRssMb = rssMb(a.server.pid)
    readyRssMb = a.readyRssMb
    log(`RSS: ${readyRssMb} MB when ready, ${idleRssMb} MB idle after the warm-up`)
    const A = 'A'
    if (wanted('health')) await scenario('health', 'GET /health', baseline, a.server, A, load(a.reqs.health))
    if (wanted('session')) await scenario('session', 'profile read, session token', baseline, a.server, A, load(a.reqs.sessionRead))
    if (wanted('access')) await scenario('access', 'profile read, access token (1 indexed row)', baseline, a.server, A, load(a.reqs.accessRead))
    if (wanted('users')) await scenario('users', `GET /users?limit=20 (admin list, ${seededUsers + 1} users)`, baseline, a.server, A, load(a.reqs.userList))
    if (wanted('login')) await scenario('login', 'login with password, 2 hash threads', baseline, a.server, A, load(a.reqs.login, { connections: loginConnections }), false)
    if (wanted('health-under-login')) {
      const probe = load(a.reqs.health, { connections: probeConnections, rate: probeRate })
      const base = await measure(baseline, { ...bare, connections: probeConnections, rate: probeRate, duration })
      const [health, logins] = await measureTogether(a.server, [probe, load(a.reqs.login, { connections: loginConnections })])
      rows.push(row('health-under-login', `GET /health at ${probeRate} req/s during login load`, A, health, base))
      rows.push(row('health-under-login', 'login load beside it (CPU: both loads together)', A, logins, base, false))
      log(`GET /health under login load: p99 ${health.p99} ms (${logins.requestsPerSecond} logins/s meanwhile)`)
    }
    if (wanted('access-eddsa')) {
      const variants: Array<[string, Record<string, string>]> = [
        ['EdDSA, verified-token cache', { JWT_ALGORITHM: 'EdDSA' }],
        ['EdDSA, no cache', { JWT_ALGORITHM: 'EdDSA', JWT_VERIFY_CACHE_SIZE: '0' }],
        ['HS256, no cache', { JWT_ALGORITHM: 'HS256', JWT_VERIFY_CACHE_SIZE: '0' }]
      ]
      for (const [label, jwtEnv] of variants) {
        const phase = await startPhase('api-jwt', `${label} (HASH_POOL_THREADS=1, ACTIVITY_LOG_REQUESTS=true)`, stack, { HASH_POOL_THREADS: '1', ACTIVITY_LOG_REQUESTS: 'true', ...jwtEnv }, build)
        servers.push(phase.server)
        await scenario('access-eddsa', `profile read, access token, ${label}`, baseline, phase.server, label.split(',')[0], load(phase.reqs.accessRead))
        await phase.server.stop()
      }
    }
    // A stays up, untouched, while B runs: its idle RSS is read once its hash threads
    // have retired (plugins/app/auth/passwords.ts, IDLE_THREAD_MS), i.e. as an instance
    // that served this load and then went quiet.
    let aQuietSince = Date.now()

    // --- API B: one hash thread, request logging off -------------------------------
    if (wanted('activity-logging') || wanted('login') || wanted('activity-list')) {
      const b = await startPhase('api-B', 'B (HASH_POOL_THREADS=1, ACTIVITY_LOG_REQUESTS=false)', stack, { HASH_POOL_THREADS: '1', ACTIVITY_LOG_REQUESTS: 'false' }, build)
      servers.push(b.server)
      const B = 'B'
      if (wanted('activity-logging')) {
        // On (A) and off (B) alternate, each after its own baseline, so a machine that
        // slows down for a minute weighs on both sides alike: the difference sought (10%)
        // is smaller than what single runs drift. Each row is the round with the median req/s.
        await toggled('POST /auth/token-info', baseline, [a, b], (p) => p.reqs.tokenInfo, toggleRounds)
        await toggled('POST /settings/update-theme', baseline, [a, b], (p) => p.reqs.updateTheme, 1)
        aQuietSince = Date.now()
      }
      if (wanted('login')) await scenario('login', 'login with password, 1 hash thread', baseline, b.server, B, load(b.reqs.login, { connections: loginConnections }), false)
      if (wanted('activity-list')) {
        const rowsLabel = `${activityRows.toLocaleString('en')} rows`
        await scenario('activity-list', `GET /activity first page (${rowsLabel})`, baseline, b.server, B, load(b.reqs.activityFirstPage))
        await scenario('activity-list', `GET /activity?module=auth&level=warning&from=-30d (${rowsLabel})`, baseline, b.server, B, load(b.reqs.activityFiltered))
      }
      await b.server.stop()
    }
    const quietFor = Date.now() - aQuietSince
    if (settleMs > 0) {
      if (quietFor < settleMs) {
        log(`waiting ${round((settleMs - quietFor) / 1000, 0)} s for A's idle hash threads to retire`)
        await sleep(settleMs - quietFor)
      }
      settledRssMb = await medianRss(a.server.pid)
      log(`RSS of A after ${round(Math.max(quietFor, settleMs) / 1000, 0)} s without requests: ${settledRssMb} MB`)
    }
    await a.server.stop()
  } finally {
    await shutdown()
  }

  const targets = evaluateTargets(rows, idleRssMb, settledRssMb)
  console.log(`\nStack: ${stack.label}. ${env.cpu}, ${env.memoryGb} GB, Node ${env.node}, ${env.date}${env.commit ? `, commit ${env.commit}` : ''}.`)
  console.log(`${duration} s per measurement, ${connections} connections (login ${loginConnections}); each baseline right before its scenario. Load average at start: ${env.loadAverage.join(' ')}.`)
  console.log(`API ${fromSource ? 'from source under tsx' : 'compiled (as npm run start:prod)'}: A = HASH_POOL_THREADS=2, ACTIVITY_LOG_REQUESTS=true; B = HASH_POOL_THREADS=1, ACTIVITY_LOG_REQUESTS=false.`)
  console.log(`RSS of A: ${readyRssMb ?? '-'} MB when ready, ${idleRssMb ?? '-'} MB right after the warm-up (a few hundred requests of each kind, 20 logins), ${settledRssMb ?? '-'} MB idle after all its scenarios (${settleMs / 1000} s or more without a request).\n`)
  console.log(resultsTable(rows))
  console.log('\nTargets (informative; the bench does not fail on them):\n')
  console.log(targetsTable(targets))
  for (const note of notes) console.log(`\nNote: ${note}`)
  const file = path.join(resultsDir, 'latest.json')
  writeFileSync(file, JSON.stringify({ ...env, stack: stack.label, api: fromSource ? 'tsx server.ts' : 'node (compiled)', duration, connections, loginConnections, probeRate, activityRows, readyRssMb, idleRssMb, settledRssMb, rows, targets, notes }, null, 2) + '\n')
  console.log(`\nWritten: ${path.relative(process.cwd(), file)}`)
}

const find = (id: ScenarioId, scenario: string): Row | undefined => rows.find((r) => r.id === id && r.scenario.startsWith(scenario))
const pct = (value: number) => `${round(value * 100, 1)}%`

/** Issue 9's must-shows, with what this run measured. */
function evaluateTargets (measured: Row[], idleRssMb: number | undefined, settledRssMb: number | undefined): Target[] {
  const targets: Target[] = []
  const ratio = (requirement: string, r: Row | undefined, min: number) => targets.push({
    requirement,
    limit: `>= ${min}x bare Fastify req/s`,
    measured: r?.ratio != null ? `${r.ratio}x (${r.api.requestsPerSecond} vs ${r.baseline.requestsPerSecond} req/s)` : '-',
    met: r?.ratio != null ? r.ratio >= min : undefined
  })
  ratio('GET /health', find('health', 'GET /health'), 0.8)
  const session = find('session', 'profile read, session token')
  ratio('session-token read', session, 0.35)
  targets.push({
    requirement: 'session-token read, server CPU',
    limit: '<= 120 µs/request',
    measured: session ? `${session.api.cpuMicrosPerRequest} µs (baseline ${session.baseline.cpuMicrosPerRequest} µs)` : '-',
    met: session ? session.api.cpuMicrosPerRequest <= 120 : undefined
  })
  ratio('access-token read, 1 indexed row', find('access', 'profile read, access token'), 0.2)

  const probe = find('health-under-login', 'GET /health at')
  targets.push({
    requirement: 'GET /health p99 under login load',
    limit: '< 25 ms',
    measured: probe ? `${probe.api.p99} ms (bare route at the same rate: ${probe.baseline.p99} ms)` : '-',
    met: probe ? probe.api.p99 < 25 : undefined
  })
  const two = find('login', 'login with password, 2')
  const one = find('login', 'login with password, 1')
  const scaling = two && one && one.api.requestsPerSecond > 0 ? two.api.requestsPerSecond / one.api.requestsPerSecond : undefined
  targets.push({
    requirement: 'logins/s, 2 hash threads vs 1',
    limit: '>= 1.7x',
    measured: scaling !== undefined ? `${round(scaling)}x (${two!.api.requestsPerSecond} vs ${one!.api.requestsPerSecond} logins/s)` : '-',
    met: scaling !== undefined ? scaling >= 1.7 : undefined
  })

  const cost = (route: string) => {
    const on = find('activity-logging', `${route}, request logging on`)
    const off = find('activity-logging', `${route}, request logging off`)
    if (!on || !off || off.api.requestsPerSecond === 0 || on.baseline.requestsPerSecond === 0 || off.baseline.requestsPerSecond === 0) return undefined
    const relative = (r: Row) => r.api.requestsPerSecond / r.baseline.requestsPerSecond
    // CPU per request of everything serving it (API, PostgreSQL, Redis): what the row adds, without autocannon's share of the cores.
    const serving = (r: Row) => r.api.cpuMicrosPerRequest + r.api.servicesCpuMicrosPerRequest
    return { raw: 1 - on.api.requestsPerSecond / off.api.requestsPerSecond, normalized: 1 - relative(on) / relative(off), cpuOn: serving(on), cpuOff: serving(off), on, off }
  }
  const costText = (c: NonNullable<ReturnType<typeof cost>>) =>
    `${pct(c.raw)} (${c.on.api.requestsPerSecond} on vs ${c.off.api.requestsPerSecond} off req/s; vs baseline: ${pct(c.normalized)}; ` +
    `API+PG+Redis CPU ${c.cpuOn} vs ${c.cpuOff} µs/req: ${pct(1 - c.cpuOff / c.cpuOn)} of it)`
  const automatic = cost('POST /auth/token-info')
  targets.push({
    requirement: 'activity logging cost (automatic row, POST /auth/token-info)',
    limit: '<= 10% of throughput',
    measured: automatic ? costText(automatic) : '-',
    met: automatic ? automatic.raw <= 0.1 : undefined
  })
  const audited = cost('POST /settings/update-theme')
  targets.push({
    requirement: 'same toggle on POST /settings/update-theme (its audit row is written either way)',
    limit: 'informative',
    measured: audited ? costText(audited) : '-',
    met: undefined,
    informative: true
  })

  targets.push({
    requirement: `idle RSS (A, ${settleMs / 1000} s after its last request)`,
    limit: '< 150 MB',
    measured: settledRssMb !== undefined ? `${settledRssMb} MB (${idleRssMb ?? '-'} MB right after the warm-up, hash threads still up)` : '-',
    met: settledRssMb !== undefined ? settledRssMb < 150 : undefined
  })
  const soakFile = path.join(resultsDir, 'soak.json')
  const soak = existsSync(soakFile) ? JSON.parse(readFileSync(soakFile, 'utf8')) as SoakResult : undefined
  targets.push({
    requirement: 'RSS drift over a 5-minute soak (npm run bench:soak, last result)',
    limit: 'within 10%',
    measured: soak?.windowSamples ? `${soak.driftPercent}% (RSS ${soak.minRssMb}-${soak.maxRssMb} MB; ${soak.durationSeconds} s, ${soak.stack}, ${soak.date.slice(0, 16)})` : 'no bench/results/soak.json',
    // A shorter soak is shown but does not count.
    met: soak?.windowSamples && soak.durationSeconds >= 300 ? Math.abs(soak.driftPercent) <= 10 : undefined
  })
  return targets
}

main().catch((error: unknown) => {
  console.error(error)
  process.exitCode = 1
})
