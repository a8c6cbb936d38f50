import fp from 'fastify-plugin'
import type { IncomingMessage, ServerResponse } from 'node:http'
import helmet, { type HelmetOptions } from 'helmet'

/** helmet's policy for this API (SR-31). HSTS is added by plugins/app/http/security.ts, only over TLS. */
export const helmetOptions: Readonly<HelmetOptions> = {
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
}

/**
 * The headers helmet sets for `options`, computed once. The policy has no
 * per-request part (no nonces), so running helmet's middleware on every request
 * (as @fastify/helmet does: it re-parses the CSP directives each time) would
 * only recompute the same dozen headers.
 */
export function securityHeaders (options: Readonly<HelmetOptions> = helmetOptions): Record<string, string> {
  const headers: Record<string, string> = {}
  const response = {
    // Lower-case names, as Fastify stores them: reply.header() lower-cases each name it is
    // given, and a name that is already lower case skips that string's lookup per request.
    setHeader (name: string, value: string | number | readonly string[]) { headers[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : String(value) },
    removeHeader (name: string) { delete headers[name.toLowerCase()] }
  }
  let failure: unknown
  helmet(options)({} as IncomingMessage, response as unknown as ServerResponse, (error?: unknown) => { failure = error })
  if (failure) throw failure instanceof Error ? failure : new Error(String(failure))
  return headers
}

/**
 * Security headers on every response (SR-31), errors and 404s included: the
 * static set above, computed once by helmet itself and set from one
 * callback-style onRequest hook, so nothing runs helmet per request
 * (docs/performance.md, "Deviations from the design card").
 */
export default fp(async (fastify) => {
  const headers = securityHeaders()
  fastify.addHook('onRequest', (_request, reply, done) => {
    reply.headers(headers)
    done()
  })
}, { name: 'helmet' })
