import fp from 'fastify-plugin'
import jwt from '@fastify/jwt'

/**
 * The JWT signer and verifier for access and session tokens (HS256, fixed iss/aud).
 * The key is given once, so fast-jwt builds one signer and one caching verifier.
 * Tokens are issued and verified by plugins/app/auth/tokens.ts only, which adds
 * the checks fast-jwt does not make; they are read from headers by
 * plugins/app/auth/authenticate.ts, never from cookies or the query string.
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
      // Keys are fast-jwt's default, a SHA-256 of the token. The token itself as the
      // key would be cheaper, but fast-jwt then warns at every start
      // (FAST_JWT_CACHE_KEY_BUILDER_SECURITY_RISK), which operators should not learn
      // to ignore (docs/performance.md).
      cache: 10_000
    }
  })
}, { name: 'jwt' })
