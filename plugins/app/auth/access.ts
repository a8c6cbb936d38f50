import fp from 'fastify-plugin'

/**
 * Route access declarations (SR-24). Every route either says `config.public: true`
 * or lists the permission codenames it needs in `config.permissions` (`[]` = any
 * signed-in user). A route that declares neither refuses to register, so nothing
 * is public by accident. The declaration is copied into the OpenAPI operation:
 * security schemes, an `x-permissions` extension and a line in the description.
 * A public route may add `auth: 'optional'` (authenticate.ts): it is documented
 * with the schemes plus `{}`, so Swagger UI sends a credential when it has one.
 */
declare module 'fastify' {
  interface FastifyContextConfig {
    public?: boolean
    permissions?: string[]
    /** Public routes only: accept a credential when one is presented (`request.auth`), without requiring it. */
    auth?: 'optional'
  }
}

export const securityRequirement = [{ oauth2: [] }, { bearerAuth: [] }, { sessionToken: [] }]

export default fp(async (fastify) => {
  fastify.addHook('onRoute', (route) => {
    const config = (route.config ?? {}) as { public?: boolean, permissions?: string[], auth?: 'optional', url?: string }
    const schema = (route.schema ??= {}) as Record<string, unknown>
    // Every route documents (and serializes) its failures with the one error envelope.
    const response = (schema.response ??= {}) as Record<string, unknown>
    response['4xx'] ??= { $ref: 'ErrorResponse#' }
    response['5xx'] ??= { $ref: 'ErrorResponse#' }
    if (config.auth === 'optional' && !config.public) {
      throw new Error(`Route ${String(route.method)} ${route.url} declares auth: 'optional' without config.public`)
    }
    if (config.public) {
      if (config.auth === 'optional') schema.security ??= [{}, ...securityRequirement]
      return
    }
    if (!Array.isArray(config.permissions)) {
      throw new Error(`Route ${String(route.method)} ${route.url} declares neither config.public nor config.permissions`)
    }
    const needs = config.permissions.length > 0 ? `Requires permission: ${config.permissions.join(', ')}.` : 'Requires a signed-in user.'
    schema.security ??= securityRequirement
    schema['x-permissions'] = config.permissions
    schema.description = schema.description ? `${String(schema.description)}\n\n${needs}` : needs
  })
}, { name: 'access' })
