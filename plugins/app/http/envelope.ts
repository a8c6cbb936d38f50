import fp from 'fastify-plugin'
import type { FastifyReply } from 'fastify'

/**
 * `reply.ok(data)` wraps a handler's result in the success envelope of API.md:
 * `{ success: true, id, message, data, timestamp, meta? }`. The route's response
 * schema (schemas/envelope.ts `Envelope`) then serializes it as an allow-list.
 */
export interface OkOptions {
  /** Catalog key of the message; defaults to `success.default`. */
  message?: string
  params?: Record<string, string | number>
  meta?: Record<string, unknown>
  status?: number
}

declare module 'fastify' {
  interface FastifyReply {
    ok: <T>(data: T, options?: OkOptions) => FastifyReply
  }
}

export default fp(async (fastify) => {
  fastify.decorateReply('ok', function (this: FastifyReply, data: unknown, options: OkOptions = {}) {
    const request = this.request
    const body = {
      success: true,
      id: String(request.id),
      message: request.t(options.message ?? 'success.default', options.params),
      data,
      timestamp: new Date().toISOString(),
      ...(options.meta ? { meta: options.meta } : {})
    }
    return this.code(options.status ?? 200).send(body)
  })

  // The request id travels back on every response, errors included.
  // (Callback-style hooks here and in i18n/security: no promise per request.)
  fastify.addHook('onRequest', (request, reply, done) => {
    reply.header('X-Request-Id', request.id)
    done()
  })
}, { name: 'envelope', dependencies: ['i18n'] })

/**
 * preValidation hook for routes whose body is optional (all its fields are):
 * a request without a body is validated as `{}` instead of failing "must be object".
 */
export async function bodyOptional (request: { body: unknown }) {
  request.body ??= {}
}
