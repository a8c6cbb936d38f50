import fp from 'fastify-plugin'
import { apiPrefix } from '../../../config.ts'

/**
 * Transport headers helmet does not decide (SR-31): HSTS only when the request
 * came over TLS (directly, or through a trusted proxy's X-Forwarded-Proto), and
 * `Cache-Control: no-store` on API answers, which are per-caller and often carry tokens.
 */
export default fp(async (fastify) => {
  const prefix = `${apiPrefix(fastify.config)}/`
  fastify.addHook('onSend', (request, reply, payload, done) => {
    if (request.protocol === 'https') reply.header('Strict-Transport-Security', 'max-age=31536000; includeSubDomains')
    if (!reply.hasHeader('Cache-Control') && (request.url.startsWith(prefix) || reply.statusCode >= 400)) {
      reply.header('Cache-Control', 'no-store')
    }
    done(null, payload)
  })
}, { name: 'security' })
