import fp from 'fastify-plugin'
import jwt from '@fastify/jwt'

/** How far in the future an `iat` may lie: clock drift between our own instances. */
const IAT_SKEW_SECONDS = 60

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Verifies a token of ours and returns its claims; throws on any doubt. On top
     * of fast-jwt's checks: `iss` and `aud` present and single strings, `iat` not
     * in the future (SR-17). The only entry point for access and session tokens.
     */
    verifyToken: <T extends object>(token: string) => T
  }
}

/**
 * Signs and verifies access and session tokens (HS256, fixed iss/aud). The key is
 * given once, so fast-jwt builds one signer and one caching verifier.
 * Tokens are read by plugins/app/auth/authenticate.ts, never from cookies or the query string.
 */
export default fp(async (fastify) => {
  const secret = fastify.config.JWT_SECRET_KEY
  if (!secret) throw new Error('JWT_SECRET_KEY is not set')
  await fastify.register(jwt, {
    secret,
    sign: { algorithm: 'HS256', iss: fastify.config.JWT_ISSUER, aud: fastify.config.JWT_AUDIENCE },
    verify: {
      algorithms: ['HS256'],
      allowedIss: fastify.config.JWT_ISSUER,
      allowedAud: fastify.config.JWT_AUDIENCE,
      // fast-jwt checks iss and aud only when present: required, they cannot be left out.
      requiredClaims: ['sub', 'sid', 'jti', 'type', 'iat', 'exp', 'iss', 'aud'],
      // Keys are fast-jwt's default, a SHA-256 of the token (about 2.5 µs per verify).
      // The token itself as the key measured faster, but fast-jwt then warns at every
      // start (FAST_JWT_CACHE_KEY_BUILDER_SECURITY_RISK), which operators should not
      // learn to ignore (docs/performance.md).
      cache: 10_000
    }
  })

  fastify.decorate('verifyToken', <T extends object>(token: string): T => {
    const claims = fastify.jwt.verify<T & { iss?: unknown, aud?: unknown, iat?: unknown }>(token)
    // fast-jwt accepts an `aud` array that contains ours; we issue one audience only.
    if (typeof claims.iss !== 'string' || typeof claims.aud !== 'string') throw new Error('iss and aud must be single strings')
    if (typeof claims.iat !== 'number' || claims.iat > fastify.now() / 1000 + IAT_SKEW_SECONDS) throw new Error('iat lies in the future')
    return claims
  })
}, { name: 'jwt' })
