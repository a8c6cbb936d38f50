import { createHash, timingSafeEqual } from 'node:crypto'
import fp from 'fastify-plugin'
import { Type } from '@sinclair/typebox'
import { collectDefaultMetrics, Histogram, Registry } from 'prom-client'
import { AppError } from '../../schemas/errors.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** The app's own Prometheus registry (GET /metrics serves it); plugins add their metrics to it. */
    metrics: { registry: Registry }
  }
  interface FastifyContextConfig {
    /** false: the route's requests are not counted (probes, the metrics endpoint itself). */
    metrics?: boolean
  }
}

const digest = (value: string) => createHash('sha256').update(value).digest()

/**
 * Checks `Authorization: Bearer <METRICS_TOKEN>`. Both sides are hashed first,
 * so the comparison takes the same time whatever the sent value's length and
 * content (timingSafeEqual needs equal lengths).
 */
export function metricsTokenCheck (token: string) {
  const expected = digest(token)
  return (authorization: string | undefined) => {
    const sent = authorization === undefined ? undefined : /^Bearer\s+(\S+)\s*$/i.exec(authorization)?.[1]
    if (sent === undefined) throw new AppError('AUTH_REQUIRED')
    if (!timingSafeEqual(digest(sent), expected)) throw new AppError('AUTH_INVALID_TOKEN')
  }
}

const uncounted = new Set(['HEAD', 'OPTIONS', 'TRACE', 'CONNECT'])
type LabelledHistogram = ReturnType<Histogram<'method' | 'route' | 'status_code'>['labels']>

/**
 * Prometheus metrics at GET /metrics (with METRICS_TOKEN set, for
 * `Authorization: Bearer <METRICS_TOKEN>` only; in production only then): process metrics (prom-client's defaults) and
 * `http_request_duration_seconds` by method, route pattern and status code, for
 * the routes the app registered (an unmatched URL would make a label per path).
 *
 * Written on prom-client directly, without a plugin: one onResponse hook reads
 * Fastify's own elapsed time and observes a labelled child found by route and
 * status code, so nothing is built per request (docs/performance.md).
 */
export default fp(async (fastify) => {
  const { METRICS_ENABLED, METRICS_TOKEN, NODE_ENV } = fastify.config
  if (!METRICS_ENABLED) return
  // In production the endpoint exists only behind a token: metrics show routes,
  // error rates and memory to anyone who can reach the port.
  const served = METRICS_TOKEN !== undefined || NODE_ENV !== 'production'
  if (!served) {
    fastify.log.warn('METRICS_TOKEN is not set: no metrics are collected or served in production')
    return
  }
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  const duration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'request duration in seconds',
    labelNames: ['method', 'route', 'status_code'] as const,
    registers: [registry]
  })
  fastify.decorate('metrics', { registry })

  // route config (one object per route and method) -> status code -> labelled child; null: not counted
  const children = new WeakMap<object, Map<number, LabelledHistogram> | null>()
  function histogramOf (config: { metrics?: boolean, url?: string }, method: string, is404: boolean, statusCode: number): LabelledHistogram | undefined {
    let byStatus = children.get(config)
    if (byStatus === undefined) {
      const counted = config.metrics !== false && !uncounted.has(method) && !is404 && config.url !== undefined
      children.set(config, byStatus = counted ? new Map() : null)
    }
    if (byStatus === null) return undefined
    let child = byStatus.get(statusCode)
    if (!child) byStatus.set(statusCode, child = duration.labels(method, config.url!, String(statusCode)))
    return child
  }
  fastify.addHook('onResponse', (request, reply, done) => {
    histogramOf(request.routeOptions.config, request.method, request.is404, reply.statusCode)?.observe(reply.elapsedTime / 1000)
    done()
  })

  const authorize = METRICS_TOKEN === undefined ? undefined : metricsTokenCheck(METRICS_TOKEN)
  fastify.get('/metrics', {
    // public: the API's user tokens do not apply; METRICS_TOKEN is checked here instead.
    config: { public: true, rateLimit: false, metrics: false },
    logLevel: 'warn',
    schema: { hide: true, response: { 200: Type.String() } },
    // Registered before plugins/app/http/errors.ts sets the app's error handler; looked up
    // when an error happens, so a refusal answers the usual envelope.
    errorHandler: (error, request, reply) => fastify.errorHandler(error, request, reply)
  }, async (request, reply) => {
    authorize?.(request.headers.authorization)
    return reply.type(registry.contentType).send(await registry.metrics())
  })
}, { name: 'metrics' })
