/**
 * `npm run bench`: starts the API and a bare Fastify baseline on loopback, seeds a
 * user, and runs bounded autocannon scenarios, each next to the baseline measured
 * right before it (interleaved, same run). Reports requests/s, p50/p99 latency,
 * errors, server CPU microseconds per request (from /proc of the server process)
 * and RSS; writes JSON to bench/results/latest.json.
 *
 * Real PostgreSQL + Redis when BENCH_DATABASE_URL / BENCH_REDIS_URL are set (or
 * DATABASE_URL / REDIS_URL), embedded defaults otherwise.
 * BENCH_DURATION (seconds per scenario, default 8), BENCH_CONNECTIONS (default 50),
 * BENCH_ONLY (comma-separated scenario names).
 */
import { fork, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import autocannon from 'autocannon'

const here = path.dirname(fileURLToPath(import.meta.url))
const root = path.resolve(here, '..')
const duration = Number(process.env.BENCH_DURATION ?? 8)
const connections = Number(process.env.BENCH_CONNECTIONS ?? 50)
const only = process.env.BENCH_ONLY?.split(',').map((s) => s.trim())
const databaseUrl = process.env.BENCH_DATABASE_URL ?? process.env.DATABASE_URL
const redisUrl = process.env.BENCH_REDIS_URL ?? process.env.REDIS_URL
const adminEmail = 'bench-admin@example.com'
const adminPassword = 'bench password that is long enough'

interface Server { child: ChildProcess, port: number, pid: number }

function cpuMicros (pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  const ticks = Number(fields[11]) + Number(fields[12]) // utime + stime
  return ticks * (1_000_000 / 100) // USER_HZ is 100 on Linux
}
function rssMb (pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'))
  return Math.round(Number(line?.replace(/\D+/g, '') ?? 0) / 1024)
}

async function startBaseline (): Promise<Server> {
  const child = fork(path.join(here, 'baseline.ts'), [], { execArgv: ['--import', 'tsx'], env: { ...process.env, PORT: '0' } })
  const port = await new Promise<number>((resolve) => child.once('message', (m: { port: number }) => resolve(m.port)))
  return { child, port, pid: child.pid! }
}

async function startApi (env: Record<string, string>): Promise<Server> {
  const port = 30000 + Math.floor(Math.random() * 20000)
  const child = fork(path.join(root, 'server.ts'), [], {
    cwd: root,
    execArgv: ['--import', 'tsx'],
    env: {
      ...process.env,
      NODE_ENV: 'development',
      PORT: String(port),
      HOST: '127.0.0.1',
      LOG_LEVEL: 'warn',
      RATE_LIMIT_MAX: '100000000',
      AUTH_RATE_LIMIT_PER_IP: '100000000',
      AUTH_RATE_LIMIT_PER_IDENTIFIER: '100000000',
      BOOTSTRAP_ADMIN_EMAIL: adminEmail,
      BOOTSTRAP_ADMIN_PASSWORD: adminPassword,
      METRICS_ENABLED: 'true',
      ...env
    },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc']
  })
  await new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`API exited with ${code}`)))
    child.on('message', (m) => { if (m === 'ready') resolve() })
  })
  return { child, port, pid: child.pid! }
}

interface Scenario { name: string, method?: 'GET' | 'POST', path: string, headers?: Record<string, string>, body?: string, connections?: number }
interface Measured { requestsPerSecond: number, p50: number, p99: number, errors: number, cpuMicrosPerRequest: number, rssMb: number, requests: number }

async function measure (server: Server, scenario: Scenario): Promise<Measured> {
  const cpuBefore = cpuMicros(server.pid)
  const result = await autocannon({
    url: `http://127.0.0.1:${server.port}${scenario.path}`,
    method: scenario.method ?? 'GET',
    headers: { 'content-type': 'application/json', ...scenario.headers },
    body: scenario.body,
    connections: scenario.connections ?? connections,
    duration
  })
  const cpu = cpuMicros(server.pid) - cpuBefore
  const requests = result.requests.total
  return {
    requestsPerSecond: Math.round(result.requests.average),
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.errors + result.timeouts + result.non2xx,
    cpuMicrosPerRequest: requests > 0 ? Math.round(cpu / requests) : 0,
    rssMb: rssMb(server.pid),
    requests
  }
}

async function json (port: number, method: string, url: string, body?: unknown) {
  const res = await fetch(`http://127.0.0.1:${port}${url}`, { method, headers: { 'content-type': 'application/json' }, body: body ? JSON.stringify(body) : undefined })
  return res.json() as Promise<any>
}

const dataDir = mkdtempSync(path.join(tmpdir(), 'bench-'))
const stackEnv: Record<string, string> = {
  DATA_DIR: dataDir,
  ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}),
  ...(redisUrl ? { REDIS_URL: redisUrl, REDIS_KEY_PREFIX: `bench:${Date.now()}:` } : {})
}

const baseline = await startBaseline()
const api = await startApi(stackEnv)
const rows: Array<{ scenario: string, api: Measured, baseline: Measured, ratio: number }> = []
try {
  const idleRss = rssMb(api.pid)
  const login = await json(api.port, 'POST', '/api/v1/auth/login-with-password', { identifier: adminEmail, password: adminPassword })
  if (!login.success) throw new Error(`bench login failed: ${JSON.stringify(login)}`)
  const { session_token: sessionToken, access_token: accessToken } = login.data

  const scenarios = ([
    { name: 'GET /health', path: '/health' },
    { name: 'profile, session token (no DB read)', path: '/api/v1/settings/profile', headers: { authorization: `Bearer ${sessionToken}` } },
    { name: 'profile, access token (1 indexed read)', path: '/api/v1/settings/profile', headers: { authorization: `Bearer ${accessToken}` } },
    { name: 'login with password (Argon2id in the pool)', method: 'POST', path: '/api/v1/auth/login-with-password', body: JSON.stringify({ identifier: adminEmail, password: adminPassword }), connections: 8 }
  ] satisfies Scenario[] as Scenario[]).filter((s) => !only || only.some((o) => s.name.includes(o)))

  for (const scenario of scenarios) {
    const base = await measure(baseline, { name: 'baseline', path: '/' })
    const measured = await measure(api, scenario)
    rows.push({ scenario: scenario.name, api: measured, baseline: base, ratio: Math.round((measured.requestsPerSecond / base.requestsPerSecond) * 100) / 100 })
    console.error(`measured: ${scenario.name}`)
  }

  const stack = databaseUrl ? 'PostgreSQL + Redis' : 'embedded (PGlite + in-process store)'
  console.log(`\nStack: ${stack}; ${duration}s per scenario; ${connections} connections (login: 8); Node ${process.version}; idle RSS ${idleRss} MB\n`)
  console.log('| scenario | req/s | p50 ms | p99 ms | errors | server CPU µs/req | RSS MB | baseline req/s | ratio |')
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|')
  for (const r of rows) {
    console.log(`| ${r.scenario} | ${r.api.requestsPerSecond} | ${r.api.p50} | ${r.api.p99} | ${r.api.errors} | ${r.api.cpuMicrosPerRequest} | ${r.api.rssMb} | ${r.baseline.requestsPerSecond} | ${r.ratio}x |`)
  }
  writeFileSync(path.join(here, 'results', 'latest.json'), JSON.stringify({ date: new Date().toISOString(), stack, duration, connections, node: process.version, idleRssMb: idleRss, rows }, null, 2))
} finally {
  api.child.kill('SIGTERM')
  baseline.child.kill('SIGTERM')
  await new Promise((resolve) => setTimeout(resolve, 500))
  rmSync(dataDir, { recursive: true, force: true })
}
