import fp from 'fastify-plugin'
import cors from '@fastify/cors'

/**
 * CORS from the CORS_ORIGINS allow-list (SR-32). A foreign origin gets a normal
 * answer without CORS headers (the browser then blocks it), never a 500. With an
 * empty list (the default) the plugin is not registered, and an OPTIONS request
 * (a preflight) gets 204 with no CORS headers, as a foreign origin's preflight
 * does with a list: the browser then refuses the cross-origin call.
 */
export default fp(async (fastify) => {
  const allowList = new Set(fastify.config.CORS_ORIGINS.split(',').map((o) => o.trim().replace(/\/$/, '')).filter(Boolean))
  // No allow-list, no cross-origin access: nothing to add to any response, so no
  // per-request hook at all (browsers refuse a cross-origin answer without CORS headers).
  if (allowList.size === 0) {
    fastify.options('*', { config: { public: true }, schema: { hide: true } }, (_request, reply) => { reply.code(204).send() })
    return
  }
  await fastify.register(cors, {
    origin: (origin, callback) => callback(null, origin !== undefined && allowList.has(origin)),
    credentials: true,
    methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
    allowedHeaders: ['Authorization', 'X-Session-Token', 'Content-Type', 'Accept-Language', 'X-Request-Id'],
    exposedHeaders: ['X-Request-Id', 'Retry-After', 'Content-Language', 'X-RateLimit-Limit', 'X-RateLimit-Remaining', 'X-RateLimit-Reset'],
    maxAge: 600,
    strictPreflight: false
  })
}, { name: 'cors' })
