import t from 'tap'
import { readFileSync } from 'node:fs'
import Fastify from 'fastify'
import type { TSchema } from '@sinclair/typebox'
import SwaggerParser from '@apidevtools/swagger-parser'
import { build } from '../helpers/build.ts'
import { errorCodes } from '../../schemas/errors.ts'
import { sharedSchemas } from '../../schemas/index.ts'
import { TokenBundleSchema } from '../../schemas/auth.ts'
import { UserSchema } from '../../schemas/user.ts'
import { ref } from '../../schemas/ref.ts'
import { addSharedSchemas } from '../../plugins/app/http/schemas.ts'
import docs from '../../plugins/external/swagger.ts'

t.test('/api-docs/json is a valid OpenAPI 3 document with named components', async (t) => {
  const app = await build(t)
  const res = await app.inject('/api-docs/json')
  t.equal(res.statusCode, 200)
  const doc = res.json()
  t.match(doc.openapi, /^3\./)
  await t.resolves(SwaggerParser.validate(structuredClone(doc)), 'validates with swagger-parser')

  const names = Object.keys(doc.components.schemas ?? {})
  t.ok(names.includes('ErrorResponse'), 'the error envelope is a named component')
  t.notOk(names.some((n) => /^def-\d+$/.test(n)), 'no def-N names')
  t.same(doc.components.schemas.ErrorResponse.properties.error.properties.code.enum?.sort() ??
    doc.components.schemas.ErrorResponse.properties.error.properties.code.anyOf?.map((s: any) => s.enum?.[0] ?? s.const).sort(),
  Object.keys(errorCodes).sort(), 'every error code is documented')

  t.same(Object.keys(doc.components.securitySchemes).sort(), ['bearerAuth', 'oauth2', 'sessionToken'])
  t.equal(doc.components.securitySchemes.oauth2.flows.password.tokenUrl, '/api/v1/token')
  t.same(doc.servers, [{ url: '/' }], 'relative server: Try it out stays on the page origin')

  const system = doc.paths['/api/v1/health/system'].get
  t.same(system['x-permissions'], ['view_system_health'], 'the permission shows in the document (SR-24)')
  t.same(system.security, [{ oauth2: [] }, { bearerAuth: [] }, { sessionToken: [] }])
  t.notOk(doc.paths['/health'].get.security, 'public routes need no credential')
  t.ok(doc.paths['/api/v1/health/database'].get.responses['4XX'] || doc.paths['/api/v1/health/database'].get.responses['5XX'] || true)
})

t.test('Swagger UI is served at /api-docs', async (t) => {
  const app = await build(t)
  const res = await app.inject('/api-docs')
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /text\/html/)
  t.match(res.body, /swagger-ui/i)
  const initializer = await app.inject('/api-docs/static/swagger-initializer.js')
  t.equal(initializer.statusCode, 200, 'the UI script loads from the same origin (CSP self)')
})

t.test('GET /metrics speaks Prometheus text', async (t) => {
  const app = await build(t, { METRICS_ENABLED: 'true' })
  await app.inject('/health')
  await app.inject('/health')
  await app.inject({ method: 'HEAD', url: '/health' })
  await app.inject('/no/such/path/1234')
  await app.inject('/api/v1/settings/profile')
  const res = await app.inject('/metrics')
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /text\/plain/)
  t.match(res.body, /process_cpu_user_seconds_total/)
  const counts = Object.fromEntries([...res.body.matchAll(/^http_request_duration_seconds_count\{(.*)\} (\d+)$/gm)].map((m) => [m[1], Number(m[2])]))
  t.same(counts, {
    'method="GET",route="/health",status_code="200"': 2,
    'method="GET",route="/api/v1/settings/profile",status_code="401"': 1
  }, 'counted by route pattern and status; HEAD, unmatched URLs and /metrics itself are not')
  t.match(res.body, /http_request_duration_seconds_bucket\{le="0.005",method="GET",route="\/health",status_code="200"\}/)

  const again = await app.inject('/metrics')
  t.match(again.body, /http_request_duration_seconds_count\{method="GET",route="\/health",status_code="200"\} 2/, 'scrapes do not count themselves')
})

/** Every operation of a document, with its method and path. */
function operations (doc: any): Array<{ method: string, path: string, op: any }> {
  return Object.entries(doc.paths).flatMap(([path, item]: [string, any]) =>
    Object.entries(item).map(([method, op]) => ({ method, path, op })))
}

t.test('the document is a client contract: operationIds, optional defaults, enums, tags', async (t) => {
  const app = await build(t)
  const doc = app.swagger() as any
  const ops = operations(doc)
  t.ok(ops.length >= 70, `${ops.length} operations`)

  const missing = ops.filter(({ op }) => typeof op.operationId !== 'string' || !/^[a-z][A-Za-z]+$/.test(op.operationId))
  t.same(missing.map(({ method, path }) => `${method} ${path}`), [], 'every operation has a camelCase operationId')
  const seen = new Map<string, string>()
  const duplicates = []
  for (const { method, path, op } of ops) {
    if (seen.has(op.operationId)) duplicates.push(`${op.operationId}: ${seen.get(op.operationId)} and ${method} ${path}`)
    seen.set(op.operationId, `${method} ${path}`)
  }
  t.same(duplicates, [], 'operationIds are unique')
  t.equal(doc.paths['/api/v1/users'].get.operationId, 'listUsers')
  t.equal(doc.paths['/api/v1/auth/login-with-password'].post.operationId, 'loginWithPassword')

  const defaulted = ops.flatMap(({ method, path, op }) => (op.parameters ?? []).map((p: any) => ({ where: `${method} ${path} ${p.in}:${p.name}`, p })))
    .filter(({ p }) => p.schema?.default !== undefined)
  t.ok(defaulted.length >= 10, 'parameters with defaults exist (limit, tz, period, purpose, ...)')
  t.same(defaulted.filter(({ p }) => p.required !== false).map(({ where }) => where), [], 'no parameter with a default is required')
  const limit = doc.paths['/api/v1/users'].get.parameters.find((p: any) => p.name === 'limit')
  t.same({ required: limit.required, default: limit.schema.default }, { required: false, default: 20 }, 'the default is shown')

  const purpose = doc.paths['/api/v1/upload/media'].get.parameters.find((p: any) => p.name === 'purpose')
  t.same(purpose.schema, { type: 'string', enum: ['media', 'profile_picture'], default: 'media' }, 'a union of literals is one enum')
  const anyOfLiterals: string[] = []
  const walk = (node: any, where: string) => {
    if (node === null || typeof node !== 'object') return
    if (Array.isArray(node.anyOf) && node.anyOf.every((b: any) => Array.isArray(b?.enum) && b.enum.length === 1)) anyOfLiterals.push(where)
    for (const [k, v] of Object.entries(node)) walk(v, `${where}/${k}`)
  }
  walk(doc, '#')
  t.same(anyOfLiterals, [], 'no enum is left as an anyOf of single values')

  const declared = new Set(doc.tags.map((tag: any) => tag.name))
  t.ok(doc.tags.every((tag: any) => typeof tag.description === 'string' && tag.description.length > 0), 'every tag is described')
  t.same(ops.filter(({ op }) => op.tags?.length !== 1 || !declared.has(op.tags[0])).map(({ method, path }) => `${method} ${path}`), [],
    'each operation is in exactly one declared tag')
})

t.test('openapi.json (from which the client is generated) is the document the app serves', async (t) => {
  const app = await build(t)
  const committed = JSON.parse(readFileSync(new URL('../../openapi.json', import.meta.url), 'utf8'))
  t.same(committed, JSON.parse(JSON.stringify(app.swagger())), 'run `npm run client:generate` after changing a route')
})

/** The list in a shuffled order, the same for the same seed. */
function shuffled<T> (list: readonly T[], seed: number): T[] {
  const out = [...list]
  let state = seed
  const next = () => (state = (state * 1103515245 + 12345) % 2 ** 31) / 2 ** 31
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1))
    ;[out[i], out[j]] = [out[j], out[i]]
  }
  return out
}

/**
 * A bare instance with the docs plugin and the shared schemas added in the
 * given order, and one route per shared schema taking it as its body and
 * answering it. Fastify's default compilers compile every validator and
 * serializer at ready, so an unresolved reference fails here.
 */
async function withSchemasIn (order: readonly TSchema[]) {
  const app = Fastify({ ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', useDefaults: true, allErrors: true } } })
  app.decorate('config', { MODE: 'api/v1', NODE_ENV: 'test' } as never)
  await app.register(docs)
  addSharedSchemas(app, order)
  for (const schema of sharedSchemas) {
    app.post(`/echo/${String(schema.$id)}`, { schema: { body: ref(schema), response: { 200: ref(schema) } } }, async (request) => request.body)
  }
  await app.ready()
  return app
}

const account = {
  user_id: '00000000-0000-4000-8000-000000000001',
  email: 'ada@example.com',
  phone_number: null,
  user_name: 'ada',
  first_name: 'Ada',
  last_name: null,
  bio: null,
  country: 'GB',
  gender: null,
  dob: null,
  language: 'en',
  theme: 'system',
  timezone: 'UTC',
  profile_accessibility: 'public',
  profile_picture_url: null,
  auth_type: 'email',
  user_type: 'user',
  is_email_verified: true,
  is_phone_verified: false,
  is_active: true,
  status: 'active',
  has_password: true,
  last_login: null,
  created_at: '2026-01-01T00:00:00.000Z',
  last_updated: '2026-01-01T00:00:00.000Z'
}

t.test('shared schemas may be added in any order: same validation, serialization and document (SR-29)', async (t) => {
  const orders: Array<[string, readonly TSchema[]]> = [
    ['as listed', sharedSchemas],
    ['reversed', [...sharedSchemas].reverse()],
    ...[1, 2, 3].map((seed): [string, TSchema[]] => [`shuffled (seed ${seed})`, shuffled(sharedSchemas, seed)])
  ]
  t.not(orders[2][1].map((s) => s.$id).join(), orders[0][1].map((s) => s.$id).join(), 'a shuffle changes the order')
  let reference: { components: unknown, paths: unknown } | undefined
  for (const [name, order] of orders) {
    await t.test(name, async (t) => {
      const app = await withSchemasIn(order)
      t.teardown(() => app.close())

      // ContactChange refers to OtpSent and User; a nested reference validates the body...
      const changed = await app.inject({ method: 'POST', url: '/echo/ContactChange', payload: { status: 'changed', user: { ...account, password: '$argon2id$secret' } } })
      t.equal(changed.statusCode, 200, 'a valid body through two references')
      // ...and the referenced response schema is the allow-list of what leaves.
      t.same(changed.json(), { status: 'changed', user: account }, 'the nested User is serialized by its own schema: no password')
      const { user_id: _missing, ...incomplete } = account
      t.equal((await app.inject({ method: 'POST', url: '/echo/ContactChange', payload: { status: 'changed', user: incomplete } })).statusCode, 400, 'an invalid referenced part is refused')
      const signup = { email: 'ada@example.com', otp: '123456', password: 'correct horse' }
      t.equal((await app.inject({ method: 'POST', url: '/echo/SignupRequest', payload: signup })).statusCode, 200, 'a valid shared body')
      t.equal((await app.inject({ method: 'POST', url: '/echo/SignupRequest', payload: { ...signup, is_admin: true } })).statusCode, 400, 'unknown fields of a shared body are refused')

      const doc = app.swagger() as unknown as { components: { schemas: Record<string, unknown> }, paths: unknown }
      t.same(Object.keys(doc.components.schemas).sort(), sharedSchemas.map((s) => String(s.$id)).sort(), 'every shared schema is a component')
      const contents = { components: doc.components, paths: doc.paths }
      if (reference === undefined) reference = contents
      else t.same(contents, reference, 'the document holds the same components and operations')
    })
  }
})

t.test('a shared schema that refers to one not shared fails the start', async (t) => {
  const [missing, complete] = [Fastify(), Fastify()]
  t.teardown(() => Promise.all([missing.close(), complete.close()]))
  t.throws(() => addSharedSchemas(missing, [TokenBundleSchema]), /shared schema TokenBundle refers to User/)
  t.doesNotThrow(() => addSharedSchemas(complete, [TokenBundleSchema, UserSchema]), 'with the schema it refers to, it starts')
})
