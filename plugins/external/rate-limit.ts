import fp from 'fastify-plugin'
import rateLimit from '@fastify/rate-limit'
import { AppError } from '../../schemas/errors.ts'

/**
 * The global per-IP limit (SR-10), counted in Redis when configured so every
 * instance shares one budget. `request.ip` honours X-Forwarded-For only from
 * TRUST_PROXY, so a client cannot choose its own bucket. Routes add stricter
 * limits through `config.rateLimit`; probes opt out. When Redis is down the
 * global limit lets requests through (availability); the security-critical
 * counters (lockout, OTP) fail closed in their own code. Each counter is one key
 * read and written by one script, so it works unchanged on a Redis Cluster.
 */
export default fp(async (fastify) => {
  await fastify.register(rateLimit, {
    global: true,
    max: fastify.config.RATE_LIMIT_MAX,
    timeWindow: fastify.config.RATE_LIMIT_WINDOW_SECONDS * 1000,
    hook: 'onRequest',
    ...(fastify.redis ? { redis: fastify.redis } : {}),
    nameSpace: 'rl:',
    skipOnError: true,
    keyGenerator: (request) => request.ip,
    errorResponseBuilder: (_request, context) => new AppError('RATE_LIMITED', { retryAfter: Math.ceil(context.ttl / 1000) })
  })
}, { name: 'rate-limit', dependencies: ['store'] })
