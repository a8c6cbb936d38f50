import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import { Type } from '@sinclair/typebox'
import { apiPrefix } from '../../config.ts'

/**
 * The documents JWT middleware reads to verify our tokens by itself (issue 20):
 * the JWK Set (RFC 7517) and an OpenID Connect discovery document pointing at it.
 * Unprefixed and public. Deliberately NOT in the API envelope: `jose`,
 * Caddy/Envoy/Kong JWT plugins expect the standard shapes at the top level (the
 * exception is listed in the README's API notes). The security headers still apply
 * (plugins/app/http/security.ts); errors (429, 503) keep the envelope.
 */
const MAX_AGE_SECONDS = 300
const cacheControl = `public, max-age=${MAX_AGE_SECONDS}`

const Jwk = Type.Object({
  kty: Type.String(),
  kid: Type.String(),
  alg: Type.String(),
  use: Type.Literal('sig'),
  crv: Type.Optional(Type.String()),
  x: Type.Optional(Type.String()),
  y: Type.Optional(Type.String()),
  n: Type.Optional(Type.String()),
  e: Type.Optional(Type.String())
})

const Discovery = Type.Object({
  issuer: Type.String({ description: 'The `iss` claim of our tokens (JWT_ISSUER)' }),
  jwks_uri: Type.String(),
  token_endpoint: Type.String(),
  grant_types_supported: Type.Array(Type.String()),
  response_types_supported: Type.Array(Type.String()),
  subject_types_supported: Type.Array(Type.String()),
  id_token_signing_alg_values_supported: Type.Array(Type.String()),
  token_endpoint_auth_methods_supported: Type.Array(Type.String()),
  claims_supported: Type.Array(Type.String())
})

const wellKnown: FastifyPluginAsyncTypebox = async (fastify) => {
  const { config, signingKeys } = fastify
  const notice = 'Not wrapped in the API envelope: the standard document, as JWT middleware reads it.'

  /** PUBLIC_URL, else the request's own origin (X-Forwarded-Host/-Proto only from a TRUST_PROXY proxy). */
  const baseUrl = (request: FastifyRequest) => config.PUBLIC_URL ?? `${request.protocol}://${request.host}`

  fastify.get('/.well-known/jwks.json', {
    config: { public: true },
    logLevel: 'warn',
    schema: {
      operationId: 'getJwks',
      tags: ['auth'],
      summary: 'The public keys our access and session tokens are signed with (JWK Set, RFC 7517)',
      description: `The current key and the previous ones whose tokens may still be valid; a token names its key in the \`kid\` header. Cacheable for ${MAX_AGE_SECONDS} s (ETag). Empty with JWT_ALGORITHM=HS256 (the secret is never published). ${notice}`,
      response: { 200: Type.Object({ keys: Type.Array(Jwk) }), 304: Type.Null({ description: 'Not modified (If-None-Match)' }) }
    }
  }, async (request, reply) => {
    // Serialized by the response schema: an allow-list, so no private member can leave.
    const { keys, etag } = signingKeys.jwks()
    reply.header('cache-control', cacheControl).header('etag', etag)
    if (request.headers['if-none-match'] === etag) return reply.code(304).send(null)
    return { keys }
  })

  fastify.get('/.well-known/openid-configuration', {
    config: { public: true },
    logLevel: 'warn',
    schema: {
      operationId: 'getOpenIdConfiguration',
      tags: ['auth'],
      summary: 'Discovery document (OpenID Connect Discovery shape): issuer, JWKS URI, token endpoint',
      description: `Absolute URLs from PUBLIC_URL, else from the request's host (X-Forwarded-Host/-Proto only from a TRUST_PROXY proxy). ${notice}`,
      response: { 200: Discovery }
    }
  }, async (request, reply) => {
    const base = baseUrl(request)
    const algorithms = new Set<string>([config.JWT_ALGORITHM])
    for (const key of signingKeys.jwks().keys) algorithms.add(key.alg)
    reply.header('cache-control', cacheControl)
    return {
      issuer: config.JWT_ISSUER,
      jwks_uri: `${base}/.well-known/jwks.json`,
      token_endpoint: `${base}${apiPrefix(config)}/token`,
      grant_types_supported: ['password'],
      response_types_supported: ['token'],
      subject_types_supported: ['public'],
      id_token_signing_alg_values_supported: [...algorithms],
      token_endpoint_auth_methods_supported: ['none'],
      claims_supported: ['sub', 'sid', 'jti', 'type', 'iss', 'aud', 'iat', 'exp', 'amr', 'aal']
    }
  })
}

export default wellKnown
