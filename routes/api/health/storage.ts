import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { Envelope } from '../../../schemas/envelope.ts'
import { AppError } from '../../../schemas/errors.ts'
import { timed } from '../../root/health.ts'

/**
 * The local driver's check writes a probe file and the GCS one reads the
 * bucket, so a public route that probed on every call would let anyone make
 * the instance write (or spend bucket requests) as fast as they can send. The
 * result is kept for STORAGE_HEALTH_CACHE_SECONDS instead, and callers arriving
 * while a probe runs share it: at most one probe per period per instance,
 * whatever the request rate, and monitoring needs no credential.
 */
const storageHealth: FastifyPluginAsyncTypebox = async (fastify) => {
  const periodMs = fastify.config.STORAGE_HEALTH_CACHE_SECONDS * 1000
  let last: { at: number, result: ReturnType<typeof timed> } | undefined
  const probe = () => {
    const now = fastify.now()
    if (!last || now - last.at >= periodMs || now < last.at) last = { at: now, result: timed(() => fastify.storage.check(), 5000) }
    return last
  }

  fastify.get('/storage', {
    config: { public: true },
    schema: {
      operationId: 'getStorageHealth',
      tags: ['health'],
      summary: 'File storage reachability (local folder writable, or the GCS bucket answering); 503 otherwise',
      description: 'Writes a probe file in the local folder, or reads the bucket\'s metadata on GCS. The probe runs at most once per STORAGE_HEALTH_CACHE_SECONDS per instance; `checked_at` says when this answer was measured.',
      response: { 200: Envelope(Type.Object({ status: Type.Literal('up'), driver: Type.String(), latency_ms: Type.Number(), checked_at: Type.String({ format: 'date-time' }) })) }
    }
  }, async (_request, reply) => {
    const driver = fastify.storage.driver.name
    const { at, result } = probe()
    const check = await result
    const checkedAt = new Date(at).toISOString()
    if (check.status === 'down') throw new AppError('SERVICE_UNAVAILABLE', { details: { storage: { ...check, driver, checked_at: checkedAt } } })
    return reply.ok({ status: 'up' as const, driver, latency_ms: check.latency_ms, checked_at: checkedAt })
  })
}

export default storageHealth
