import autocannon from 'autocannon'
import { cpuMicros, rssMb } from './proc.ts'
import type { RequestSpec } from './api.ts'
import type { Server } from './servers.ts'

/** One kind of request sent by autocannon for a while. */
export interface Load extends RequestSpec {
  connections: number
  /** Requests per second over all connections; unset = as fast as the server answers. */
  rate?: number
  /** Seconds. */
  duration: number
}

export interface Measured {
  requestsPerSecond: number
  requests: number
  /** Latency in ms. */
  p50: number
  p99: number
  /** Connection errors, timeouts and non-2xx answers. */
  errors: number
  /** The non-2xx answers by status code, e.g. { "503": 12 }. */
  statuses: Record<string, number>
  /** Server CPU time (all threads, from /proc) divided by the requests of this load. */
  cpuMicrosPerRequest: number
  /** Server resident memory right after the load, MB. */
  rssMb: number
}

async function fire (server: Server, load: Load): Promise<autocannon.Result> {
  return autocannon({
    url: `http://127.0.0.1:${server.port}${load.path}`,
    method: load.method ?? 'GET',
    headers: { ...(load.body !== undefined ? { 'content-type': 'application/json' } : {}), ...load.headers },
    body: load.body,
    connections: load.connections,
    overallRate: load.rate,
    duration: load.duration
  })
}

function summarize (result: autocannon.Result, cpu: number, server: Server): Measured {
  const requests = result.requests.total
  const statuses: Record<string, number> = {}
  for (const [code, stat] of Object.entries(result.statusCodeStats ?? {})) {
    if (!code.startsWith('2') && stat.count) statuses[code] = stat.count
  }
  return {
    requestsPerSecond: Math.round(requests / result.duration),
    requests,
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.errors + result.non2xx,
    statuses,
    cpuMicrosPerRequest: requests > 0 ? Math.round(cpu / requests) : 0,
    rssMb: rssMb(server.pid)
  }
}

/** Runs `load` against `server` and measures the server's CPU over it. */
export async function measure (server: Server, load: Load): Promise<Measured> {
  const before = cpuMicros(server.pid)
  const result = await fire(server, load)
  return summarize(result, cpuMicros(server.pid) - before, server)
}

/**
 * Runs several loads against one server at once. The server's CPU is shared
 * between them, so each one's CPU per request is the total over all requests.
 */
export async function measureTogether (server: Server, loads: Load[]): Promise<Measured[]> {
  const before = cpuMicros(server.pid)
  const results = await Promise.all(loads.map((load) => fire(server, load)))
  const cpu = cpuMicros(server.pid) - before
  const total = results.reduce((sum, r) => sum + r.requests.total, 0)
  return results.map((r) => ({ ...summarize(r, 0, server), cpuMicrosPerRequest: total > 0 ? Math.round(cpu / total) : 0 }))
}

/** `amount` requests of each kind, so that lazily compiled serializers, caches and pools are warm before anything is measured. */
export async function warmUp (server: Server, loads: RequestSpec[], amount = 200): Promise<void> {
  for (const load of loads) {
    const result = await autocannon({
      url: `http://127.0.0.1:${server.port}${load.path}`,
      method: load.method ?? 'GET',
      headers: { ...(load.body !== undefined ? { 'content-type': 'application/json' } : {}), ...load.headers },
      body: load.body,
      connections: 4,
      amount
    })
    if (result.non2xx > 0 || result.errors > 0) {
      throw new Error(`warm-up of ${load.method ?? 'GET'} ${load.path}: ${result.non2xx} non-2xx answers, ${result.errors} errors`)
    }
  }
}
