import fp from 'fastify-plugin'
import jwt from '@fastify/jwt'

/**
 * Signs and verifies access and session tokens (HS256, fixed iss/aud). The key is
 * given once, so fast-jwt builds one signer and one caching verifier.
 * Tokens are read by plugins/app/auth.ts, never from cookies or the query string.
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
      requiredClaims: ['sub', 'sid', 'jti', 'type', 'iat', 'exp'],
      cache: 10_000,
      // The cache is keyed by the token itself. fast-jwt's default key is a SHA-256 of
      // the token, meant to keep tokens out of the heap; here the signing key lives in
      // the same heap, so the hash protected nothing, and it cost about 2.5 µs (4%) of
      // every authenticated request in the bench's profile. The key is exact: a token
      // differing in any byte (a forged payload with a copied signature) misses the
      // cache and is verified in full (test/auth/tokens.test.ts).
      cacheKeyBuilder: (token: string) => token
    }
  })
}, { name: 'jwt' })
