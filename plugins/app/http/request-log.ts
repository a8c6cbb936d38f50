import fp from 'fastify-plugin'

/** Probes polled by load balancers and Prometheus: logging them would drown the rest. */
export const unloggedRoutes = new Set(['/health', '/health/ready', '/metrics'])

/**
 * Production request log: one line per answered request (pino's default is two,
 * "incoming request" and "request completed", turned off by disableRequestLogging
 * in app.ts) with the method, route pattern, status, duration and request id
 * (`reqId`, bound by the request's logger). Probes are not logged.
 */
export default fp(async (fastify) => {
  if (fastify.config.NODE_ENV !== 'production') return
  // At debug level the arrival is logged too, so an operator (or a test) can tell a
  // request that reached the instance from one still in a socket buffer.
  if (fastify.config.LOG_LEVEL === 'debug' || fastify.config.LOG_LEVEL === 'trace') {
    fastify.addHook('onRequest', (request, _reply, done) => {
      request.log.debug({ method: request.method, url: request.url.split('?')[0] }, 'request received')
      done()
    })
  }
  fastify.addHook('onResponse', (request, reply, done) => {
    const route = request.routeOptions.url
    if (route === undefined || !unloggedRoutes.has(route)) {
      request.log.info({
        method: request.method,
        route: route ?? null,
        url: route === undefined ? request.url.split('?')[0] : undefined,
        status: reply.statusCode,
        duration_ms: Math.round(reply.elapsedTime * 10) / 10
      }, 'request')
    }
    done()
  })
}, { name: 'request-log' })
