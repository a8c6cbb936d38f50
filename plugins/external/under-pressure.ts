import fp from 'fastify-plugin'
import underPressure from '@fastify/under-pressure'
import { AppError } from '../../schemas/errors.ts'

/** Sheds load with 503 SERVICE_UNAVAILABLE when the event loop is saturated, instead of timing out everyone. */
export default fp(async (fastify) => {
  const maxDelay = fastify.config.LOAD_SHED_EVENT_LOOP_DELAY_MS
  await fastify.register(underPressure, {
    maxEventLoopDelay: maxDelay,
    retryAfter: 5,
    pressureHandler: (_request, reply) => {
      reply.send(new AppError('SERVICE_UNAVAILABLE', { retryAfter: 5 }))
    }
  })
}, { name: 'under-pressure' })
