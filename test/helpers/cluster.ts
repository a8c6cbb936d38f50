import { Agent, request } from 'undici'
import { buildContext, stack, type TestContext } from './build.ts'
import { caddyInstalled, startCaddy, startServer, type CaddyProcess, type ServerProcess } from './processes.ts'

/**
 * The production shape on one machine: Caddy (the committed Caddyfile) in
 * front of two API processes on a real PostgreSQL database and Redis. Each
 * test file gets its own database and Redis key prefix from buildContext; the
 * in-process app it returns is used only to create users directly in the
 * database.
 */

export const prefix = '/api/v1'

/** Why a file of end-to-end tests cannot run here, or false. */
export function e2eSkipReason (): string | false {
  if (stack === 'embedded') return 'end-to-end: several processes need a shared PostgreSQL and Redis; the embedded stack is single-process'
  if (!caddyInstalled()) return 'end-to-end: caddy is not installed (apt-get install caddy; .ci/run installs it)'
  return false
}

interface Teardown { teardown: (fn: () => unknown) => void }

export interface Reply {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: any
}

/**
 * HTTP from a chosen loopback source address. Linux routes all of 127.0.0.0/8
 * to lo, so each address is a distinct client for Caddy, which passes it on in
 * X-Forwarded-For: tests get separate rate-limit buckets per client, like
 * real users behind the same proxy.
 */
export class Clients {
  private readonly agents = new Map<string, Agent>()

  constructor (t: Teardown) {
    t.teardown(() => Promise.all([...this.agents.values()].map((a) => a.close())))
  }

  private agent (ip: string) {
    let agent = this.agents.get(ip)
    if (!agent) {
      agent = new Agent({ localAddress: ip, keepAliveTimeout: 1000 })
      this.agents.set(ip, agent)
    }
    return agent
  }

  async call (url: string, opts: { ip?: string, method?: 'GET' | 'POST' | 'PUT' | 'DELETE', headers?: Record<string, string>, json?: unknown } = {}): Promise<Reply> {
    const res = await request(url, {
      method: opts.method ?? 'GET',
      dispatcher: this.agent(opts.ip ?? '127.0.0.1'),
      headers: { ...(opts.json !== undefined ? { 'content-type': 'application/json' } : {}), ...opts.headers },
      body: opts.json !== undefined ? JSON.stringify(opts.json) : undefined,
      headersTimeout: 30_000,
      bodyTimeout: 30_000
    })
    const text = await res.body.text()
    let body: unknown = text
    try { body = JSON.parse(text) } catch {}
    return { status: res.statusCode, headers: res.headers, body }
  }
}

export interface Cluster {
  ctx: TestContext
  /** The environment every API process of the cluster shares. */
  env: Record<string, string>
  a: ServerProcess
  b: ServerProcess
  caddy: CaddyProcess
  clients: Clients
  /** Starts (or restarts, on the same port) an instance with the cluster's environment. */
  start: (label: string, port?: number, env?: Record<string, string>) => Promise<ServerProcess>
}

export interface ClusterOptions {
  /** Extra env of the API processes, or a function of the base env (e.g. DATABASE_URL through a proxy). */
  env?: Record<string, string> | ((base: Record<string, string>) => Record<string, string> | Promise<Record<string, string>>)
  caddyEnv?: Record<string, string>
}

export async function startCluster (t: Teardown & { passing: () => boolean }, opts: ClusterOptions = {}): Promise<Cluster> {
  const ctx = await buildContext(t, { HASH_POOL_THREADS: '1' })
  const env: Record<string, string> = {
    ...ctx.env,
    NODE_ENV: 'production',
    CLUSTER_MODE: 'true',
    LOG_LEVEL: 'info',
    // The template is migrated already, as the compose migrate job does it.
    DB_MIGRATE_ON_START: 'false',
    DB_POOL_MAX: '4',
    HASH_POOL_THREADS: '1',
    // Caddy connects from 127.0.0.1: its X-Forwarded-For is believed, nobody else's.
    TRUST_PROXY: '127.0.0.1'
  }
  Object.assign(env, typeof opts.env === 'function' ? await opts.env(env) : opts.env)
  const started: Array<ServerProcess | CaddyProcess> = []
  // Registered before the processes' own teardowns, so it runs while their output is still there.
  t.teardown(() => {
    if (t.passing()) return
    for (const p of started) console.error(`--- last output of ${p.name} (${p.running ? 'running' : JSON.stringify(p.exit)}) ---\n${p.tail(30)}`)
  })
  const start = async (label: string, port?: number, extra: Record<string, string> = {}) => {
    const server = await startServer(t, { label, port, env: { ...env, ...extra } })
    started.push(server)
    return server
  }
  const [a, b] = await Promise.all([start('instance-a'), start('instance-b')])
  const caddy = await startCaddy(t, {
    upstreams: [`127.0.0.1:${a.port}`, `127.0.0.1:${b.port}`],
    env: { HEALTH_INTERVAL: '1s', FAIL_DURATION: '2s', LB_TRY_DURATION: '5s', ...opts.caddyEnv }
  })
  started.push(caddy)
  return { ctx, env, a, b, caddy, clients: new Clients(t), start }
}

/** The instance (API_MODE label) that answered a P/health request. */
export const answeredBy = (reply: Reply): string | undefined => reply.body?.data?.api_mode

/**
 * Sends `total` requests with `concurrency` in flight, each from the source
 * address `ipOf(i)`; calls `at(done)` after each completion so a test can act
 * mid-load. Never throws: transport errors are returned as status 0.
 */
export async function load (opts: {
  total: number
  concurrency: number
  send: (i: number) => Promise<Reply>
  at?: (completed: number) => void
}): Promise<Array<{ i: number, status: number, error?: string, body?: unknown }>> {
  const results: Array<{ i: number, status: number, error?: string, body?: unknown }> = []
  let next = 0
  const worker = async () => {
    while (next < opts.total) {
      const i = next++
      try {
        const reply = await opts.send(i)
        results.push({ i, status: reply.status, body: reply.status === 200 ? undefined : reply.body })
      } catch (error) {
        results.push({ i, status: 0, error: (error as Error).message })
      }
      opts.at?.(results.length)
    }
  }
  await Promise.all(Array.from({ length: opts.concurrency }, worker))
  return results
}
