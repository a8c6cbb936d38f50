import { Type, type Static, type TSchema } from '@sinclair/typebox'

/**
 * A typed reference to a shared schema (one with an `$id`, registered by the
 * schemas plugin): `{ $ref: '<id>' }` in JSON Schema and OpenAPI, the
 * referenced schema's static type for the route's type provider.
 */
export function ref<T extends TSchema> (schema: T): ReturnType<typeof Type.Unsafe<Static<T>>> {
  if (!schema.$id) throw new Error('ref(): the schema has no $id')
  return Type.Unsafe<Static<T>>(Type.Ref(schema.$id))
}
