import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { Envelope } from '../../schemas/envelope.ts'
import { AppError } from '../../schemas/errors.ts'

const Check = Type.Object({ status: Type.Union([Type.Literal('up'), Type.Literal('down')]), latency_ms: Type.Number() })

/** Probes for load balancers and orchestrators; unprefixed, public, not rate limited. */
const probes: FastifyPluginAsyncTypebox = async (fastify) => {
  const probe = { public: true, rateLimit: false } as const

  fastify.get('/health', {
    config: probe,
    compress: false, // a fixed answer far below the compression threshold
    logLevel: 'warn',
    schema: { operationId: 'getLiveness', tags: ['health'], summary: 'Liveness: the process answers (no dependency is checked)', description: 'Public and not rate limited; for restarts (a process that stops answering), not for routing.', response: { 200: Envelope(Type.Object({ status: Type.Literal('ok') })) } }
  }, async (_request, reply) => {
    // Shutting down: the load balancer takes the instance out while it still answers everything else (app.ts drain).
    if (fastify.lifecycle.draining) throw new AppError('SERVICE_UNAVAILABLE', { details: { draining: true } })
    return reply.ok({ status: 'ok' as const })
  })

  fastify.get('/health/ready', {
    config: probe,
    logLevel: 'warn',
    schema: {
      operationId: 'getReadiness',
      tags: ['health'],
      summary: 'Readiness: the database and the cache answer and the process is not shutting down; 503 otherwise',
      description: 'Public and not rate limited; each check has a 2 s deadline, so a hung dependency reads as down.',
      response: { 200: Envelope(Type.Object({ status: Type.Literal('ready'), database: Check, cache: Check })) }
    }
  }, async (_request, reply) => {
    // A draining instance still answers on its open connections, but must get no new traffic.
    if (fastify.lifecycle.draining) throw new AppError('SERVICE_UNAVAILABLE', { details: { draining: true } })
    const [database, cache] = await Promise.all([timed(() => fastify.database.ping()), timed(() => fastify.store.ping())])
    if (database.status === 'down' || cache.status === 'down') {
      throw new AppError('SERVICE_UNAVAILABLE', { details: { database, cache } })
    }
    return reply.ok({ status: 'ready' as const, database, cache })
  })
}

/** Runs a check with a deadline, so a hung dependency reads as down instead of hanging the probe. */
export async function timed (check: () => Promise<unknown>, timeoutMs = 2000) {
  const started = performance.now()
  let timer: NodeJS.Timeout | undefined
  try {
    await Promise.race([check(), new Promise((_resolve, reject) => { timer = setTimeout(() => reject(new Error('timeout')), timeoutMs) })])
    return { status: 'up' as const, latency_ms: Math.round((performance.now() - started) * 100) / 100 }
  } catch {
    return { status: 'down' as const, latency_ms: Math.round((performance.now() - started) * 100) / 100 }
  } finally {
    clearTimeout(timer)
  }
}

export default probes
