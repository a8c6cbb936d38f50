import { createRequire } from 'node:module'
import type { FastifyBaseLogger } from 'fastify'
import type { RouteOptions } from 'fastify'
import type { Cluster, Redis } from 'ioredis'

/**
 * A store for @fastify/rate-limit that counts the global per-IP limit in process and
 * adds the counts to the shared Redis counters every `intervalMs`: one script call
 * (INCRBY, then PEXPIRE when the key has no expiry) per key that saw requests, sent
 * together by ioredis's auto-pipelining. A request never waits for Redis.
 *
 * - Each request is judged on the instance's estimate: the shared count last read
 *   plus what this instance counted since. A key is also synced at once when
 *   SYNC_SHARE of the limit is pending on it, so a burst is shared in steps whatever
 *   the interval. Another instance's requests reach this one's estimate at its next
 *   sync after theirs: the overshoot past RATE_LIMIT_MAX in a window is at most about
 *   (instances - 1) x min(rate x (2 x interval + a round trip), 2 x SYNC_SHARE x limit
 *   + rate x a round trip), where rate is one IP's requests/s on one instance. One
 *   instance alone never lets more than the limit through.
 * - Keys and windows are those of the library's Redis store (`rl:<ip>`, the window
 *   starts at the first request and its TTL is Redis's), so instances on the exact
 *   store (RATE_LIMIT_SYNC_MS=0, or an older version) share the same counters.
 * - When Redis is unreachable no request fails or waits for it: each instance goes on
 *   counting on its own (the limit then holds per instance), and the unsent counts of a
 *   failed sync are dropped.
 * - Route limits (`config.rateLimit`: login, OTP, sign-up...) are `child` stores: they
 *   stay exact, one script per request on the library's Redis store (SR-9, SR-10).
 */
interface Counter {
  /** This window's count as far as this instance knows: the last synced shared count plus what was counted since. */
  hits: number
  /** Counted here, not yet sent. */
  pending: number
  /** Sent, not yet answered. */
  sending: number
  /** The shared count at the last sync. */
  shared: number
  resetAt: number
  window: number
}

interface LibraryStore {
  incr: (key: string, cb: (err: Error | null, res: { current: number, ttl: number } | null) => void, timeWindow: number, max: number) => void
  child: (routeOptions: unknown) => LibraryStore
}
type LibraryStoreCtor = new (continueExceeding: boolean, exponentialBackoff: boolean, redis: Redis | Cluster, key: string) => LibraryStore
const LibraryRedisStore = createRequire(import.meta.url)('@fastify/rate-limit/store/RedisStore.js') as LibraryStoreCtor

const ADD = `local current = redis.call('INCRBY', KEYS[1], ARGV[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  ttl = tonumber(ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return {current, ttl}`

/** A key with this share of its limit pending is synced at once. */
export const SYNC_SHARE = 0.05
/** Counters idle this many syncs past their window are forgotten. */
const SWEEP_EVERY = 20

type AddCommand = (key: string, count: number, windowMs: number) => Promise<[number, number]>

export interface BatchedRateLimit {
  /** The store class to give @fastify/rate-limit (`store`). */
  Store: new (options: unknown) => unknown
  /** Sends what is pending now (tests, shutdown). */
  flush: () => Promise<void>
  close: () => Promise<void>
}

export function batchedRateLimitStore (redis: Redis | Cluster, intervalMs: number, nameSpace: string, log: FastifyBaseLogger): BatchedRateLimit {
  const commands = redis as unknown as { rateLimitAdd?: AddCommand }
  if (commands.rateLimitAdd === undefined) redis.defineCommand('rateLimitAdd', { numberOfKeys: 1, lua: ADD })
  const add = (key: string, count: number, windowMs: number) => commands.rateLimitAdd!(key, count, windowMs)
  const counters = new Map<string, Counter>()
  const dirty = new Set<string>()
  let syncs = 0
  let running: Promise<void> | null = null
  /** A key reached its share while a sync was running: sync again right after it. */
  let again = false

  async function send () {
    const now = Date.now()
    const batch: Array<Promise<void>> = []
    for (const key of dirty) {
      const counter = counters.get(key)
      if (counter === undefined || counter.pending === 0) continue
      const sent = counter.pending
      counter.pending = 0
      counter.sending += sent
      batch.push(add(nameSpace + key, sent, counter.window).then(([shared, ttl]) => {
        counter.sending -= sent
        counter.shared = Number(shared)
        // The shared count is the truth; what was counted here meanwhile comes on top.
        counter.hits = counter.shared + counter.sending + counter.pending
        counter.resetAt = Date.now() + Number(ttl)
      }, (err: unknown) => {
        counter.sending -= sent
        throw err
      }))
    }
    dirty.clear()
    if (++syncs % SWEEP_EVERY === 0) {
      for (const [key, counter] of counters) if (counter.resetAt + intervalMs * SWEEP_EVERY < now && counter.pending === 0 && counter.sending === 0) counters.delete(key)
    }
    const results = await Promise.allSettled(batch)
    const failed = results.find((r) => r.status === 'rejected')
    if (failed) log.warn({ err: failed.reason, keys: results.length }, 'global rate limit: counts could not be added to Redis; counting per instance meanwhile')
  }

  function flush (): Promise<void> {
    running ??= send().finally(() => {
      running = null
      if (again) {
        again = false
        flush().catch(() => {})
      }
    })
    return running
  }

  const timer = setInterval(() => { if (running === null && dirty.size > 0) flush().catch(() => {}) }, intervalMs)
  timer.unref()

  class Store {
    incr (key: string, cb: (err: Error | null, res: { current: number, ttl: number }) => void, timeWindow: number, max: number) {
      const now = Date.now()
      let counter = counters.get(key)
      if (counter === undefined) {
        counter = { hits: 0, pending: 0, sending: 0, shared: 0, resetAt: now + timeWindow, window: timeWindow }
        counters.set(key, counter)
      } else if (counter.resetAt <= now) {
        // A new window: what is still unanswered belonged to the old one.
        counter.hits = counter.sending
        counter.shared = 0
        counter.resetAt = now + timeWindow
        counter.window = timeWindow
      }
      counter.hits++
      counter.pending++
      dirty.add(key)
      if (counter.pending >= max * SYNC_SHARE) {
        if (running === null) flush().catch(() => {})
        else again = true
      }
      cb(null, { current: counter.hits, ttl: counter.resetAt - now })
    }

    child (routeOptions: { continueExceeding: boolean, exponentialBackoff: boolean, routeInfo: RouteOptions }) {
      return new LibraryRedisStore(routeOptions.continueExceeding, routeOptions.exponentialBackoff, redis, `${nameSpace}${routeOptions.routeInfo.method}${routeOptions.routeInfo.url}-`)
    }
  }

  return {
    Store,
    flush,
    close: async () => {
      clearInterval(timer)
      await flush().catch(() => {})
    }
  }
}
