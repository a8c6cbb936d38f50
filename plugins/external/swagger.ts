import fp from 'fastify-plugin'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import { readFileSync } from 'node:fs'
import { apiDocsEnabled, apiPrefix } from '../../config.ts'

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { name: string, version: string, description: string }

/** The tags that group the operations, in the README's order. */
const operationTags = [
  { name: 'auth', description: 'Log in (password or one-time password), sign up, tokens, refresh, sessions, passwords: README "Tokens" and "One-time passwords and notifications"' },
  { name: 'mfa', description: 'Second factors: authenticator apps (TOTP), recovery codes, the second step of a login: README "Multi-factor authentication"' },
  { name: 'passkeys', description: 'Passkeys (WebAuthn): register them, sign in without a password (usernameless too), list, rename, remove: README "Passkeys"' },
  { name: 'settings', description: 'Your profile and settings, email and phone changes, profile picture' },
  { name: 'upload', description: 'Uploads and the files they stored: README "Uploads and storage"' },
  { name: 'users', description: 'User administration: list, status, group memberships, effective permissions' },
  { name: 'groups', description: 'Groups (roles) and the permissions they grant' },
  { name: 'permissions', description: 'Permission codenames' },
  { name: 'activity', description: 'The activity log: audit rows, request rows and client events' },
  { name: 'dashboard', description: 'Statistics for administrators' },
  { name: 'health', description: 'Probes and health checks' }
]

type SchemaNode = Record<string, unknown>
interface OpenApiDocument { paths?: Record<string, Record<string, { parameters?: Array<{ in: string, required?: boolean, schema?: SchemaNode }> }>>, [key: string]: unknown }

/**
 * Makes the generated document usable as a client contract:
 * - A querystring property with a `default` is declared without Type.Optional, so
 *   TypeBox lists it in the object's `required` and the handler's type says it is
 *   always there (Ajv's useDefaults fills it in before `required` is checked).
 *   @fastify/swagger copies `required` onto each parameter, which made generated
 *   clients demand `limit`, `tz`, ... The client may leave such a parameter out,
 *   so it is documented as optional, with its default.
 * - A union of literals (`Type.Union([Type.Literal('a'), ...])`) comes out as an
 *   `anyOf` of one-value enums, which generators turn into loose unions or drop;
 *   it is written as one `enum` listing the values.
 */
export function clientContract (doc: OpenApiDocument): OpenApiDocument {
  for (const item of Object.values(doc.paths ?? {})) {
    for (const operation of Object.values(item)) {
      for (const parameter of operation.parameters ?? []) {
        if (parameter.in !== 'path' && parameter.schema?.default !== undefined) parameter.required = false
      }
    }
  }
  return collapseLiteralUnions(doc) as OpenApiDocument
}

function collapseLiteralUnions (node: unknown): unknown {
  if (Array.isArray(node)) return node.map(collapseLiteralUnions)
  if (node === null || typeof node !== 'object') return node
  const out: SchemaNode = {}
  for (const [key, value] of Object.entries(node)) out[key] = collapseLiteralUnions(value)
  const anyOf = out.anyOf
  if (Array.isArray(anyOf) && anyOf.length > 0 && anyOf.every(isSingleValue)) {
    const types = new Set(anyOf.map((branch) => (branch as SchemaNode).type))
    if (types.size === 1) {
      const { anyOf: _branches, ...rest } = out
      return { type: [...types][0], enum: anyOf.map((branch) => (branch as { enum: unknown[] }).enum[0]), ...rest }
    }
  }
  return out
}

function isSingleValue (branch: unknown): boolean {
  if (branch === null || typeof branch !== 'object') return false
  const keys = Object.keys(branch)
  const { enum: values, type } = branch as { enum?: unknown, type?: unknown }
  return Array.isArray(values) && values.length === 1 && typeof type === 'string' && keys.every((k) => k === 'enum' || k === 'type')
}

/**
 * OpenAPI 3 generated from the route schemas; Swagger UI at /api-docs, JSON at
 * /api-docs/json. Shared schemas carry `$id`s, which become component names;
 * the schemas plugin (plugins/app/http/schemas.ts) adds them, and
 * @fastify/swagger reads them when the app is ready, so this plugin, loaded
 * before plugins/app, needs no dependency on it.
 * The server entry is relative so "Try it out" stays on the page's origin.
 * Off by default in production (API_DOCS_ENABLED): the document maps every
 * route and permission for whoever asks; then /api-docs is a plain 404.
 */
export default fp(async (fastify) => {
  if (!apiDocsEnabled(fastify.config)) return
  const tokenUrl = `${apiPrefix(fastify.config)}/token`
  await fastify.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: pkg.name, version: pkg.version, description: `${pkg.description}\n\nEvery error answers the ErrorResponse envelope; its \`code\` is one of the values listed there.` },
      servers: [{ url: '/' }],
      tags: operationTags,
      components: {
        securitySchemes: {
          oauth2: { type: 'oauth2', description: 'Log in with user name (email, phone or user name) and password; Swagger UI then sends the access token', flows: { password: { tokenUrl, scopes: {} } } },
          bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'An access token or a session token' },
          sessionToken: { type: 'apiKey', in: 'header', name: 'X-Session-Token', description: 'A session token' }
        }
      }
    },
    transformObject: (document) => clientContract(('openapiObject' in document ? document.openapiObject : document.swaggerObject) as OpenApiDocument) as never,
    refResolver: {
      buildLocalReference: (json, _baseUri, _fragment, i) => typeof json.$id === 'string' ? json.$id : `Schema${i}`
    }
  })
  // Docs are public; this context marks its own routes so the auth plugin lets them through.
  await fastify.register(async (docs) => {
    docs.addHook('onRoute', (route) => { route.config = { ...(route.config as object), public: true, rateLimit: false } as never })
    await docs.register(swaggerUi, {
      routePrefix: '/api-docs',
      uiConfig: { persistAuthorization: true, displayRequestDuration: true, tryItOutEnabled: true },
      staticCSP: false
    })
  })
}, { name: 'swagger' })
