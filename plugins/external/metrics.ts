import fp from 'fastify-plugin'
import type { FastifyPluginCallback } from 'fastify'
import metricsModule from 'fastify-metrics'

// A CommonJS build whose plugin sits on `.default` when imported from ESM.
const metrics = (metricsModule as unknown as { default: FastifyPluginCallback<Record<string, unknown>> }).default

/** Prometheus metrics at GET /metrics: request counts and latency per route pattern, process metrics. */
export default fp(async (fastify) => {
  if (!fastify.config.METRICS_ENABLED) return
  await fastify.register(metrics, {
    clearRegisterOnInit: true,
    endpoint: { url: '/metrics', method: 'GET', config: { public: true, rateLimit: false }, schema: { hide: true }, logLevel: 'warn' } as never,
    // The histogram only: Prometheus computes quantiles from its buckets, and the
    // summary's streaming quantiles (tdigest) cost more CPU per request than the rest.
    routeMetrics: { enabled: { histogram: true, summary: false }, registeredRoutesOnly: true, groupStatusCodes: false }
  })
}, { name: 'metrics' })
