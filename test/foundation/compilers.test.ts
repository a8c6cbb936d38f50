import t from 'tap'
import { SerializerSelector, type SerializerFactory } from '@fastify/fast-json-stringify-compiler'
import ValidatorSelector, { type ValidatorFactory } from '@fastify/ajv-compiler'
import { build } from '../helpers/build.ts'
import { lazySerializers, lazyValidators } from '../../app.ts'

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
