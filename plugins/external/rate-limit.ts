import fp from 'fastify-plugin'
import rateLimit from '@fastify/rate-limit'
import { AppError } from '../../schemas/errors.ts'
import { batchedRateLimitStore } from './rate-limit-store.ts'

/**
 * The global per-IP limit (SR-10), counted in Redis when configured so every
 * instance shares one budget. `request.ip` honours X-Forwarded-For only from
 * TRUST_PROXY, so a client cannot choose its own bucket. Routes add stricter
 * limits through `config.rateLimit`; probes opt out. When Redis is down the
 * global limit lets requests through (availability); the security-critical
 * counters (lockout, OTP) fail closed in their own code. Each counter is one key
 * read and written by one script, so it works unchanged on a Redis Cluster.
 *
 * With RATE_LIMIT_SYNC_MS > 0 (the default) the global limit is counted in process
 * and synced in batches (rate-limit-store.ts: its bounded overshoot, and its
 * per-instance counting while Redis is down); the route limits stay exact.
 */
export default fp(async (fastify) => {
  const { config } = fastify
  const nameSpace = 'rl:'
  const batched = fastify.redis && config.RATE_LIMIT_SYNC_MS > 0 ? batchedRateLimitStore(fastify.redis, config.RATE_LIMIT_SYNC_MS, nameSpace, fastify.log) : null
  if (batched) fastify.addHook('onClose', async () => batched.close())
  await fastify.register(rateLimit, {
    global: true,
    max: config.RATE_LIMIT_MAX,
    timeWindow: config.RATE_LIMIT_WINDOW_SECONDS * 1000,
    hook: 'onRequest',
    ...(batched ? { store: batched.Store as never } : fastify.redis ? { redis: fastify.redis } : {}),
    nameSpace,
    skipOnError: true,
    keyGenerator: (request) => request.ip,
    errorResponseBuilder: (_request, context) => new AppError('RATE_LIMITED', { retryAfter: Math.ceil(context.ttl / 1000) })
  })
}, { name: 'rate-limit', dependencies: ['store'] })
