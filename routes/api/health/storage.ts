import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { Envelope } from '../../../schemas/envelope.ts'
import { AppError } from '../../../schemas/errors.ts'
import { timed } from '../../root/health.ts'

const storageHealth: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get('/storage', {
    config: { public: true },
    schema: {
      operationId: 'getStorageHealth',
      tags: ['health'],
      summary: 'File storage reachability (local folder writable, or the GCS bucket answering); 503 otherwise',
      description: 'Writes a probe file in the local folder, or reads the bucket\'s metadata on GCS.',
      response: { 200: Envelope(Type.Object({ status: Type.Literal('up'), driver: Type.String(), latency_ms: Type.Number() })) }
    }
  }, async (_request, reply) => {
    const driver = fastify.storage.driver.name
    const check = await timed(() => fastify.storage.check(), 5000)
    if (check.status === 'down') throw new AppError('SERVICE_UNAVAILABLE', { details: { storage: { ...check, driver } } })
    return reply.ok({ status: 'up' as const, driver, latency_ms: check.latency_ms })
  })
}

export default storageHealth
