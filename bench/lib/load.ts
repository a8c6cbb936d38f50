import autocannon from 'autocannon'
import { cpuMicros, rssMb, servicesCpuMicros } from './proc.ts'
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
  /** CPU time of the local PostgreSQL and Redis processes divided by the same requests (0 on the embedded stack). */
  servicesCpuMicrosPerRequest: number
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

/** CPU so far of the API process and of the local PostgreSQL and Redis. */
function cpuNow (server: Server) {
  return { api: cpuMicros(server.pid), services: servicesCpuMicros() }
}

function summarize (result: autocannon.Result, cpu: { api: number, services: number }, server: Server): Measured {
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
    cpuMicrosPerRequest: requests > 0 ? Math.round(cpu.api / requests) : 0,
    servicesCpuMicrosPerRequest: requests > 0 ? Math.round(cpu.services / requests) : 0,
    rssMb: rssMb(server.pid)
  }
}

/** Runs `load` against `server` and measures the server's CPU over it. */
export async function measure (server: Server, load: Load): Promise<Measured> {
  const before = cpuNow(server)
  const result = await fire(server, load)
  const after = cpuNow(server)
  return summarize(result, { api: after.api - before.api, services: after.services - before.services }, server)
}

/**
 * Runs several loads against one server at once. The server's CPU is shared
 * between them, so each one's CPU per request is the total over all requests.
 */
export async function measureTogether (server: Server, loads: Load[]): Promise<Measured[]> {
  const before = cpuNow(server)
  const results = await Promise.all(loads.map((load) => fire(server, load)))
  const after = cpuNow(server)
  const total = results.reduce((sum, r) => sum + r.requests.total, 0)
  const perRequest = (micros: number) => total > 0 ? Math.round(micros / total) : 0
  return results.map((r) => ({
    ...summarize(r, { api: 0, services: 0 }, server),
    cpuMicrosPerRequest: perRequest(after.api - before.api),
    servicesCpuMicrosPerRequest: perRequest(after.services - before.services)
  }))
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
