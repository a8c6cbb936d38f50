import { Type, type Static, type TSchema, type TProperties, type TUnsafe } from '@sinclair/typebox'
import { errorCodes } from './errors.ts'

/** Bodies: unknown fields are a validation error, never silently written (SR-29). */
export const StrictObject = <T extends TProperties>(properties: T, options: Parameters<typeof Type.Object>[1] = {}) =>
  Type.Object(properties, { additionalProperties: false, ...options })

/** One of a list of strings (the lists of domain/enums.ts, say), as a union of literals. */
export const literals = <T extends string>(values: readonly T[], options: Record<string, unknown> = {}) =>
  Type.Union(values.map((v) => Type.Literal(v)), options)

/**
 * `T` or null, in request bodies. Null first: with coerceTypes on, a
 * [string, null] union would turn a null into "" before the null branch is tried.
 */
export const OrNull = <T extends TSchema>(schema: T) => Type.Union([Type.Null(), schema])

export const Uuid = (description?: string) => Type.String({ format: 'uuid', description })
export const DateTime = (description?: string) => Type.String({ format: 'date-time', description })

/**
 * `T` or null, in responses. Written as a type list (`type: ['string', 'null']`)
 * instead of `anyOf: [T, null]`: fast-json-stringify serializes a type list with a
 * `typeof` test but runs an Ajv validator for each `anyOf` field of every object
 * it writes (with the date-time regex for timestamps; docs/performance.md has the
 * measurement). OpenAPI 3.0 shows both as
 * `nullable: true` (@fastify/swagger converts the list). Request schemas keep their
 * `anyOf` unions: Ajv's type coercion treats the two forms differently.
 */
export function Nullable <T extends TSchema> (schema: T): TUnsafe<Static<T> | null> {
  const type: unknown = schema.type
  // A schema with an $id stays a union: a copy would declare the same $id twice.
  if (typeof type === 'string' && type !== 'null' && schema.$id === undefined) return Type.Unsafe<Static<T> | null>({ ...schema, type: [type, 'null'] })
  return Type.Unsafe<Static<T> | null>(Type.Union([schema, Type.Null()]))
}

export const PaginationMeta = Type.Object({
  pagination: Type.Object({
    limit: Type.Integer(),
    total: Type.Optional(Type.Integer()),
    offset: Type.Optional(Type.Integer()),
    next_cursor: Nullable(Type.String())
  })
}, { $id: 'PaginationMeta', additionalProperties: true })

/** The success envelope around `data`. Its schema is the allow-list of what leaves the server. */
export function Envelope<T extends TSchema, M extends TSchema = TSchema> (data: T, meta?: M) {
  return Type.Object({
    success: Type.Literal(true),
    id: Type.String({ description: 'Request id, also sent as X-Request-Id' }),
    message: Type.String(),
    data,
    timestamp: DateTime(),
    ...(meta ? { meta: Type.Optional(meta) } : {})
  })
}

export const ErrorResponse = Type.Object({
  success: Type.Literal(false),
  error: Type.Object({
    id: Type.String({ description: 'Request id, also sent as X-Request-Id' }),
    code: Type.Union(Object.keys(errorCodes).map((code) => Type.Literal(code)), {
      description: Object.entries(errorCodes).map(([code, { status, description }]) => `${code} (${status}): ${description}`).join('\n')
    }),
    message: Type.String({ description: 'Translated, human-readable message' }),
    details: Type.Optional(Type.Unknown()),
    timestamp: DateTime()
  })
}, { $id: 'ErrorResponse', description: 'The error envelope of every failure' })

export const ListQuery = {
  limit: Type.Integer({ minimum: 1, maximum: 100, default: 20 }),
  offset: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000 })),
  cursor: Type.Optional(Type.String({ maxLength: 200 }))
}

/** Shared schemas registered with addSchema, so OpenAPI components carry these names. */
export const envelopeSchemas = [ErrorResponse, PaginationMeta]
