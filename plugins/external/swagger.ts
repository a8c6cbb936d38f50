import fp from 'fastify-plugin'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import { readFileSync } from 'node:fs'
import { sharedSchemas } from '../../schemas/index.ts'
import { apiDocsEnabled } from '../../config.ts'

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { name: string, version: string, description: string }

/**
 * OpenAPI 3 generated from the route schemas; Swagger UI at /api-docs, JSON at
 * /api-docs/json. Shared schemas carry `$id`s, which become component names.
 * The server entry is relative so "Try it out" stays on the page's origin.
 * Off by default in production (API_DOCS_ENABLED): the document maps every
 * route and permission for whoever asks; then /api-docs is a plain 404.
 */
export default fp(async (fastify) => {
  for (const schema of sharedSchemas) fastify.addSchema(schema)
  if (!apiDocsEnabled(fastify.config)) return
  const tokenUrl = `/${fastify.config.MODE}/token`
  await fastify.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: pkg.name, version: pkg.version, description: `${pkg.description}\n\nEvery error answers the ErrorResponse envelope; its \`code\` is one of the values listed there.` },
      servers: [{ url: '/' }],
      components: {
        securitySchemes: {
          oauth2: { type: 'oauth2', description: 'Log in with user name (email, phone or user name) and password; Swagger UI then sends the access token', flows: { password: { tokenUrl, scopes: {} } } },
          bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'An access token or a session token' },
          sessionToken: { type: 'apiKey', in: 'header', name: 'X-Session-Token', description: 'A session token' }
        }
      }
    },
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
