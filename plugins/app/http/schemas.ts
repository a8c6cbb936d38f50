import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import type { TSchema } from '@sinclair/typebox'
import { sharedSchemas } from '../../../schemas/index.ts'

/**
 * The `$id`s a schema refers to with `$ref` (`'User'`, `'ErrorResponse#'`),
 * nested ones included; pointers inside the schema itself (`'#/...'`) are not shared.
 */
export function referencedIds (schema: unknown, found = new Set<string>()): Set<string> {
  if (Array.isArray(schema)) {
    for (const item of schema) referencedIds(item, found)
  } else if (schema !== null && typeof schema === 'object') {
    for (const [key, value] of Object.entries(schema)) {
      if (key === '$ref' && typeof value === 'string') {
        const id = value.split('#')[0]
        if (id !== '') found.add(id)
      } else {
        referencedIds(value, found)
      }
    }
  }
  return found
}

/**
 * Adds the shared schemas to the instance, in any order: Fastify's compilers
 * and the OpenAPI generator resolve a `$ref` when they compile a route, by
 * which time every shared schema is known. Each reference is then checked
 * against the whole set, so a schema that refers to one that is not shared
 * fails the start, not the first request that needs it (app.ts compiles
 * validators and serializers on first use).
 */
export function addSharedSchemas (fastify: FastifyInstance, schemas: readonly TSchema[] = sharedSchemas): void {
  for (const schema of schemas) fastify.addSchema(schema)
  for (const schema of schemas) {
    for (const id of referencedIds(schema)) {
      if (fastify.getSchema(id) === undefined) throw new Error(`shared schema ${String(schema.$id)} refers to ${id}, which is not a shared schema (schemas/index.ts)`)
    }
  }
}

/**
 * The shared schemas (schemas/index.ts: those with an `$id`, which routes
 * reference with `ref(Schema)` and OpenAPI names as components), added to
 * the root instance before any route is declared: routes are loaded after
 * every plugin of plugins/app. The docs plugin reads them when the app is ready.
 */
export default fp(async (fastify) => {
  addSharedSchemas(fastify)
}, { name: 'schemas' })
