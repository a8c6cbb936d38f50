import fp from 'fastify-plugin'
import jwt from '@fastify/jwt'
import type { AppConfig } from '../../config.ts'

/**
 * The claim checks every token verifier makes (fixed iss/aud, required claims) and
 * its verified-token cache. fast-jwt checks iss and aud only when present: required,
 * they cannot be left out. Cache keys are fast-jwt's default, a SHA-256 of the token.
 * The token itself as the key would be cheaper, but fast-jwt then warns at every
 * start (FAST_JWT_CACHE_KEY_BUILDER_SECURITY_RISK), which operators should not learn
 * to ignore (docs/performance.md).
 */
export const verifyOptions = (config: AppConfig) => ({
  allowedIss: config.JWT_ISSUER,
  allowedAud: config.JWT_AUDIENCE,
  requiredClaims: ['sub', 'sid', 'jti', 'type', 'iat', 'exp', 'iss', 'aud'],
  cache: config.JWT_VERIFY_CACHE_SIZE > 0 ? config.JWT_VERIFY_CACHE_SIZE : false
})

/**
 * The HS256 signer and verifier (the server secret): JWT_ALGORITHM=HS256, and tokens
 * issued before a switch to a key pair. The key is given once, so fast-jwt builds one
 * signer and one caching verifier. The asymmetric ones are built per key by
 * plugins/app/auth/tokens.ts, which issues and verifies every token and adds the
 * checks fast-jwt does not make; tokens are read from headers by
 * plugins/app/auth/authenticate.ts, never from cookies or the query string.
 */
export default fp(async (fastify) => {
  const secret = fastify.config.JWT_SECRET_KEY
  if (!secret) throw new Error('JWT_SECRET_KEY is not set')
  await fastify.register(jwt, {
    secret,
    sign: { algorithm: 'HS256', iss: fastify.config.JWT_ISSUER, aud: fastify.config.JWT_AUDIENCE },
    verify: { algorithms: ['HS256'], ...verifyOptions(fastify.config) }
  })
}, { name: 'jwt' })
