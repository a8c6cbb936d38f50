import fp from 'fastify-plugin'
import { createHash } from 'node:crypto'
import { AppError } from '../../../schemas/errors.ts'

/**
 * Counters that guard against brute force, kept in the shared store so every
 * instance sees the same numbers (SR-9, SR-10). A store failure propagates and
 * the request fails with 503: these checks never fail open (SR-41).
 */
export interface Throttle {
  /** Counts one request for `key`; throws RATE_LIMITED (429 + Retry-After) past `limit` per window. */
  limit: (scope: string, key: string, limit: number, windowMs: number) => Promise<void>
  /**
   * Counts one password attempt on `account` before it is checked, and throws
   * AUTH_ACCOUNT_LOCKED (429 + Retry-After) when it may not be checked. The count
   * stands as a failure unless `clearFailures` follows (the password was right),
   * so a parallel burst cannot be checked before its failures count (SR-9).
   * The attempt that reaches the threshold locks the account as it starts (for
   * twice as long each further failure); once a lock ends, one attempt is
   * checked and locks it again. Returns how long that attempt's lock is.
   */
  reserveAttempt: (account: string) => Promise<{ failures: number, lockedForSeconds: number }>
  /** After a right password: the consecutive failures and any lock end. */
  clearFailures: (account: string) => Promise<void>
}

declare module 'fastify' {
  interface FastifyInstance { throttle: Throttle }
}

/** Identifiers are hashed in keys: no email or phone number sits in the cache in clear. */
export const keyOf = (value: string) => createHash('sha256').update(value.trim().toLowerCase()).digest('base64url').slice(0, 22)

export default fp(async (fastify) => {
  const { store, config } = fastify
  const failureWindowMs = 24 * 60 * 60 * 1000

  async function refuseWhileLocked (lockKey: string, fallbackMs?: number) {
    const ttl = await store.pttl(lockKey)
    if (ttl > 0 || ttl === -1) throw new AppError('AUTH_ACCOUNT_LOCKED', { retryAfter: Math.ceil(Math.max(ttl, 1000) / 1000) })
    // The lock that refused this attempt ended in between: refuse it all the same.
    if (fallbackMs !== undefined) throw new AppError('AUTH_ACCOUNT_LOCKED', { retryAfter: Math.ceil(fallbackMs / 1000) })
  }

  const throttle: Throttle = {
    async limit (scope, key, limit, windowMs) {
      const counterKey = `rl:${scope}:${keyOf(key)}`
      const count = await store.incr(counterKey, windowMs)
      if (count > limit) {
        const ttl = await store.pttl(counterKey)
        throw new AppError('RATE_LIMITED', { retryAfter: Math.max(1, Math.ceil((ttl > 0 ? ttl : windowMs) / 1000)) })
      }
    },
    async reserveAttempt (account) {
      const id = keyOf(account)
      const lockKey = `lock:${id}`
      await refuseWhileLocked(lockKey)
      // INCR is atomic in both stores: every parallel attempt gets its own number.
      const failures = await store.incr(`fail:${id}`, failureWindowMs)
      const over = failures - config.LOGIN_LOCKOUT_THRESHOLD
      if (over < 0) return { failures, lockedForSeconds: 0 }
      // Past the threshold only the attempt that takes the lock is checked; the
      // others of a burst find it taken (SET NX is atomic too).
      const seconds = Math.min(config.LOGIN_LOCKOUT_BASE_SECONDS * 2 ** Math.min(over, 20), config.LOGIN_LOCKOUT_MAX_SECONDS)
      if (!(await store.setNx(lockKey, String(failures), seconds * 1000))) await refuseWhileLocked(lockKey, seconds * 1000)
      return { failures, lockedForSeconds: seconds }
    },
    async clearFailures (account) {
      const id = keyOf(account)
      // One key per command (a cluster may keep them on different nodes); the count first,
      // so an attempt between the two still finds the lock.
      await store.del(`fail:${id}`)
      await store.del(`lock:${id}`)
    }
  }
  fastify.decorate('throttle', throttle)
}, { name: 'throttle', dependencies: ['store'] })
