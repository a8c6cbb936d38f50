import t from 'tap'
import { SerializerSelector, type SerializerFactory } from '@fastify/fast-json-stringify-compiler'
import ValidatorSelector, { type ValidatorFactory } from '@fastify/ajv-compiler'
import { Type } from '@sinclair/typebox'
import { build } from '../helpers/build.ts'
import { lazySerializers, lazyValidators } from '../../plugins/app/http/compilers.ts'
import { DateTime, Nullable } from '../../schemas/envelope.ts'

/** Factories that record what they compile, around Fastify's default ones. */
function counting () {
  const compiled: string[] = []
  const serializers = SerializerSelector()
  const validators = ValidatorSelector()
  const buildSerializer: SerializerFactory = (external, options) => {
    const compile = serializers(external, options)
    return (route) => {
      compiled.push(`${route.method} ${route.url} ${route.httpStatus}`)
      return compile(route)
    }
  }
  const buildValidator: ValidatorFactory = (external, options) => {
    const compile = validators(external, options)
    return (route) => {
      compiled.push(`${route.method} ${route.url} ${route.httpPart}`)
      return compile(route)
    }
  }
  return { compiled, buildSerializer, buildValidator }
}

t.test('every request and response schema of every route compiles (what start-up no longer does eagerly)', async (t) => {
  const eager = counting()
  const app = await build(t, {}, { serverOptions: { schemaController: { compilersFactory: { buildSerializer: eager.buildSerializer, buildValidator: eager.buildValidator } } } })
  t.ok(eager.compiled.length > 150, `${eager.compiled.length} serializers and validators compiled at ready`)
  t.ok(eager.compiled.includes('GET /api/v1/settings/profile 200'), 'response serializers are among them')
  t.ok(eager.compiled.includes('POST /api/v1/auth/login-with-password body'), 'request validators are among them')
  t.equal((await app.inject('/health')).statusCode, 200)
})

t.test('serializers and validators are compiled on first use, once', async (t) => {
  const inner = counting()
  const app = await build(t, {}, {
    serverOptions: { schemaController: { compilersFactory: { buildSerializer: lazySerializers(inner.buildSerializer), buildValidator: lazyValidators(inner.buildValidator) } } }
  })
  t.same(inner.compiled, [], 'nothing compiled at start-up')
  for (let i = 0; i < 3; i++) {
    const res = await app.inject('/health')
    t.equal(res.statusCode, 200)
    t.equal(res.json().data.status, 'ok')
  }
  t.same(inner.compiled, ['GET /health 200'], 'the served status compiled once')

  const missing = await app.inject('/api/v1/settings/profile')
  t.equal(missing.statusCode, 401)
  t.equal(missing.json().error.code, 'AUTH_REQUIRED', 'an error status serializes through its own schema')

  const login = '/api/v1/auth/login-with-password'
  for (let i = 0; i < 2; i++) {
    const invalid = await app.inject({ method: 'POST', url: login, payload: { identifier: 42 } })
    t.equal(invalid.statusCode, 400)
    t.equal(invalid.json().error.code, 'VALIDATION_ERROR', 'a lazily compiled validator still reports its errors')
    t.ok(invalid.json().error.details.length > 0, 'with the failing fields')
  }
  t.equal(inner.compiled.filter((c) => c === `POST ${login} body`).length, 1, 'the body validator compiled once')
})

/** Paths of the `anyOf` unions with a null member in `schema`. */
function nullUnions (schema: unknown, at = '#'): string[] {
  if (schema === null || typeof schema !== 'object') return []
  const found: string[] = []
  const members = (schema as { anyOf?: unknown[] }).anyOf
  if (Array.isArray(members) && members.some((m) => (m as { type?: unknown }).type === 'null')) found.push(at)
  for (const [key, value] of Object.entries(schema)) found.push(...nullUnions(value, `${at}/${key}`))
  return found
}

t.test('nullable response fields are type lists: no serializer runs an Ajv validator per field', async (t) => {
  const timestamp = Nullable(DateTime())
  t.same(timestamp.type, ['string', 'null'], 'a scalar becomes a type list')
  t.equal(timestamp.format, 'date-time', 'its keywords stay')
  t.same(nullUnions(Nullable(Type.Object({ a: Type.String() }))), [], 'an object too')
  t.same(nullUnions(Nullable(Type.Union([Type.String(), Type.Integer()]))), ['#'], 'a schema without one type stays a union')

  const serializers = SerializerSelector()
  const schemas: Array<{ route: string, schema: unknown }> = []
  const recording: SerializerFactory = (external, options) => {
    const compile = serializers(external, options)
    return (route) => {
      schemas.push({ route: `${route.method} ${route.url} ${route.httpStatus}`, schema: route.schema })
      return compile(route)
    }
  }
  const app = await build(t, {}, { serverOptions: { schemaController: { compilersFactory: { buildSerializer: recording } } } })
  t.ok(schemas.length > 100, `${schemas.length} response schemas seen`)
  const unions = schemas.flatMap(({ route, schema }) => nullUnions(schema).map((at) => `${route} ${at}`))
  t.same(unions, [], 'fast-json-stringify validates each anyOf member with Ajv, per field and per object: use Nullable')

  const serialize = serializers({}, {})({ schema: Type.Object({ at: timestamp }), method: 'GET', url: '/', httpStatus: '200' })
  t.equal(serialize({ at: null }), '{"at":null}')
  t.equal(serialize({ at: '2026-01-02T03:04:05.000Z' }), '{"at":"2026-01-02T03:04:05.000Z"}')
  t.equal(serialize({ at: new Date(Date.UTC(2026, 0, 2, 3, 4, 5)) }), '{"at":"2026-01-02T03:04:05.000Z"}', 'a Date still becomes its ISO string')

  const doc = (await app.inject('/api-docs/json')).json()
  t.match(doc.components.schemas.User.properties.last_login, { type: 'string', format: 'date-time', nullable: true }, 'OpenAPI 3.0 shows it as nullable')
})
