import fp from 'fastify-plugin'
import helmet from '@fastify/helmet'

/**
 * Security headers on every response (SR-31). HSTS is added by plugins/app/security.ts
 * only when the request arrived over TLS (directly or via a trusted proxy).
 */
export default fp(async (fastify) => {
  await fastify.register(helmet, {
    global: true,
    hsts: false,
    frameguard: { action: 'deny' },
    referrerPolicy: { policy: 'no-referrer' },
    crossOriginResourcePolicy: { policy: 'same-site' },
    contentSecurityPolicy: {
      directives: {
        defaultSrc: ["'self'"],
        scriptSrc: ["'self'"],
        styleSrc: ["'self'", "'unsafe-inline'"],
        imgSrc: ["'self'", 'data:'],
        connectSrc: ["'self'"],
        objectSrc: ["'none'"],
        frameAncestors: ["'none'"],
        formAction: ["'self'"],
        baseUri: ["'self'"]
      }
    }
  })
}, { name: 'helmet' })
