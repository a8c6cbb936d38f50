/**
 * `npm run bench:revocation`: how long a logout on one instance takes to reach
 * another instance whose local auth cache holds the session (issue 22).
 *
 * Two API processes (A, B) on the same scratch PostgreSQL database and Redis prefix
 * (bench/lib/stack.ts; needs both servers on 127.0.0.1). Each trial: log in on one,
 * read the profile twice on the other (the session is now hot in its local cache),
 * log out on the first, then read on the other back to back until it answers 401.
 * The latency is from the logout's answer to the first 401; `served after logout`
 * counts reads answered 200 after the logout was acknowledged.
 *
 * Environment: BENCH_TRIALS (default 1000), AUTH_LOCAL_CACHE_TTL_MS (passed to both
 * processes; default 3000). Argon2 runs with small costs here: the bench measures
 * revocation, not hashing. Writes bench/results/revocation.json.
 */
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import { API, bearer, login } from './lib/api.ts'
import { resultsDir, startApi, type Server } from './lib/servers.ts'
import { selectStack } from './lib/stack.ts'
import { round } from './lib/report.ts'

const trials = Number(process.env.BENCH_TRIALS ?? 1000)
const hardTtlMs = Number(process.env.AUTH_LOCAL_CACHE_TTL_MS ?? 3000)
const log = (message: string) => console.error(`[revocation ${new Date().toISOString().slice(11, 19)}] ${message}`)

async function read (server: Server, token: string): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${server.port}${API}/settings/profile`, { headers: bearer(token) })
  await res.arrayBuffer()
  return res.status
}

async function logout (server: Server, token: string): Promise<void> {
  const res = await fetch(`http://127.0.0.1:${server.port}${API}/auth/logout`, { method: 'POST', headers: { ...bearer(token), 'content-type': 'application/json' }, body: '{}' })
  await res.arrayBuffer()
  if (res.status !== 200) throw new Error(`logout answered ${res.status}`)
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]

async function main () {
  const stack = await selectStack({ embedded: false })
  if (!stack.postgres || !stack.redis) {
    await stack.dispose()
    throw new Error('bench:revocation needs PostgreSQL and Redis on 127.0.0.1 (the local cache exists on the Redis stack only)')
  }
  const servers: Server[] = []
  try {
    const handle = await stack.open()
    await handle.close()
    const env = { ...stack.env, AUTH_LOCAL_CACHE_TTL_MS: String(hardTtlMs), ARGON2_MEMORY_KIB: '1024', ARGON2_TIME_COST: '1', HASH_POOL_THREADS: '1', ACTIVITY_LOG_REQUESTS: 'false' }
    log(`stack: ${stack.label}; starting A and B; hard TTL ${hardTtlMs} ms; ${trials} trials`)
    servers.push(await startApi('revocation-a', env))
    servers.push(await startApi('revocation-b', env))
    const latencies: number[] = []
    let servedAfterLogout = 0
    let trialsWithStale = 0
    for (let i = 0; i < trials; i++) {
      const [writer, reader] = i % 2 === 0 ? [servers[0], servers[1]] : [servers[1], servers[0]]
      const { session } = await login(writer)
      for (let warm = 0; warm < 2; warm++) if (await read(reader, session) !== 200) throw new Error('a fresh session was refused')
      await logout(writer, session)
      const acknowledged = performance.now()
      let stale = 0
      for (;;) {
        const status = await read(reader, session)
        if (status === 401) break
        if (status !== 200) throw new Error(`read answered ${status}`)
        stale++
        if (performance.now() - acknowledged > hardTtlMs * 3) throw new Error('the revoked session is still accepted past 3 x the hard TTL')
      }
      latencies.push(performance.now() - acknowledged)
      servedAfterLogout += stale
      if (stale > 0) trialsWithStale++
      if ((i + 1) % 100 === 0) log(`${i + 1} trials`)
    }
    const sorted = [...latencies].sort((x, y) => x - y)
    const result = {
      trials,
      hardTtlMs,
      p50Ms: round(percentile(sorted, 0.5)),
      p90Ms: round(percentile(sorted, 0.9)),
      p99Ms: round(percentile(sorted, 0.99)),
      maxMs: round(sorted[sorted.length - 1]),
      servedAfterLogout,
      trialsWithStale,
      targets: { p99Under50Ms: percentile(sorted, 0.99) < 50, maxUnderHardTtl: sorted[sorted.length - 1] < hardTtlMs }
    }
    console.log(JSON.stringify(result, null, 2))
    writeFileSync(path.join(resultsDir, 'revocation.json'), JSON.stringify({ date: new Date().toISOString(), stack: stack.label, ...result }, null, 2) + '\n')
  } finally {
    await Promise.all(servers.map((s) => s.stop()))
    await stack.dispose()
  }
}

main().catch((error: unknown) => {
  console.error(error)
  process.exitCode = 1
})
