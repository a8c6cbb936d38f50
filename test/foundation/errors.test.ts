import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { Type } from '@sinclair/typebox'
import { build } from '../helpers/build.ts'
import { StrictObject } from '../../schemas/envelope.ts'
import Fastify from 'fastify'
import access from '../../plugins/app/auth/access.ts'

const probeRoutes = async (app: FastifyInstance) => {
  app.post('/probe/echo', {
    config: { public: true },
    schema: { body: StrictObject({ name: Type.String({ minLength: 2 }), age: Type.Optional(Type.Integer({ minimum: 0 })) }) }
  }, async (request, reply) => reply.ok(request.body))
  app.get('/probe/boom', { config: { public: true } }, async () => {
    throw new Error('SELECT password FROM "user" WHERE secret = 1')
  })
  app.get('/probe/down', { config: { public: true } }, async () => {
    throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' })
  })
}

const isErrorEnvelope = (t: Test, body: any, code: string, requestId?: string) => {
  t.equal(body.success, false)
  t.equal(body.error.code, code)
  t.type(body.error.message, 'string')
  t.ok(body.error.message.length > 0)
  t.type(body.error.id, 'string')
  if (requestId) t.equal(body.error.id, requestId)
  t.ok(!Number.isNaN(Date.parse(body.error.timestamp)), 'timestamp is ISO')
}

t.test('error envelopes for every kind of failure', async (t) => {
  const app = await build(t, {}, { plugins: [probeRoutes] })

  t.test('unknown route: 404 NOT_FOUND', async (t) => {
    const res = await app.inject({ method: 'GET', url: '/api/v1/nope' })
    t.equal(res.statusCode, 404)
    isErrorEnvelope(t, res.json(), 'NOT_FOUND', res.headers['x-request-id'] as string)
  })

  t.test('known path, wrong method: 405 with Allow', async (t) => {
    const res = await app.inject({ method: 'DELETE', url: '/health' })
    t.equal(res.statusCode, 405)
    t.match(res.headers.allow, /GET/)
    isErrorEnvelope(t, res.json(), 'METHOD_NOT_ALLOWED')
  })

  t.test('malformed JSON: 400 MALFORMED_JSON', async (t) => {
    const res = await app.inject({ method: 'POST', url: '/probe/echo', headers: { 'content-type': 'application/json' }, payload: '{"name": "ab",' })
    t.equal(res.statusCode, 400)
    isErrorEnvelope(t, res.json(), 'MALFORMED_JSON')
  })

  t.test('2 MiB JSON body: 413 PAYLOAD_TOO_LARGE', async (t) => {
    const res = await app.inject({ method: 'POST', url: '/probe/echo', headers: { 'content-type': 'application/json' }, payload: JSON.stringify({ name: 'x'.repeat(2 * 1024 * 1024) }) })
    t.equal(res.statusCode, 413)
    isErrorEnvelope(t, res.json(), 'PAYLOAD_TOO_LARGE')
  })

  t.test('unsupported content type: 415', async (t) => {
    const res = await app.inject({ method: 'POST', url: '/probe/echo', headers: { 'content-type': 'text/csv' }, payload: 'a,b' })
    t.equal(res.statusCode, 415)
    isErrorEnvelope(t, res.json(), 'UNSUPPORTED_MEDIA_TYPE')
  })

  t.test('validation: 400 VALIDATION_ERROR listing each field (SR-29)', async (t) => {
    const res = await app.inject({ method: 'POST', url: '/probe/echo', payload: { name: 'a', age: -1, is_admin: true } })
    t.equal(res.statusCode, 400)
    const body = res.json()
    isErrorEnvelope(t, body, 'VALIDATION_ERROR')
    t.ok(Array.isArray(body.error.details))
    t.ok(body.error.details.some((d: any) => d.unknown_field === 'is_admin'), 'unknown field named')
    t.ok(body.error.details.some((d: any) => d.field === 'body/name'), 'short name named')
  })

  t.test('a valid body passes and comes back in the success envelope', async (t) => {
    const res = await app.inject({ method: 'POST', url: '/probe/echo', payload: { name: 'ab' }, headers: { 'x-request-id': 'client-request-0001' } })
    t.equal(res.statusCode, 200)
    const body = res.json()
    t.equal(body.success, true)
    t.equal(body.id, 'client-request-0001', 'a well-formed incoming request id is kept')
    t.equal(res.headers['x-request-id'], 'client-request-0001')
    t.same(body.data, { name: 'ab' })
    t.type(body.message, 'string')
    t.ok(!Number.isNaN(Date.parse(body.timestamp)))
  })

  t.test('a malformed incoming request id is replaced', async (t) => {
    const res = await app.inject({ method: 'GET', url: '/health', headers: { 'x-request-id': 'bad id<script>' } })
    t.not(res.headers['x-request-id'], 'bad id<script>')
    t.match(res.headers['x-request-id'], /^[0-9a-f-]{36}$/)
  })

  t.test('unexpected exception: 500 INTERNAL_ERROR, no stack, no SQL (SR-33)', async (t) => {
    const res = await app.inject({ method: 'GET', url: '/probe/boom' })
    t.equal(res.statusCode, 500)
    isErrorEnvelope(t, res.json(), 'INTERNAL_ERROR')
    t.notMatch(res.body, /SELECT|password|stack|at .*\.ts/)
  })

  t.test('dependency down: 503 SERVICE_UNAVAILABLE', async (t) => {
    const res = await app.inject({ method: 'GET', url: '/probe/down' })
    t.equal(res.statusCode, 503)
    isErrorEnvelope(t, res.json(), 'SERVICE_UNAVAILABLE')
  })

  t.test('protected routes deny by default: 401 AUTH_REQUIRED (SR-24)', async (t) => {
    const res = await app.inject({ method: 'GET', url: '/api/v1/health/system' })
    t.equal(res.statusCode, 401)
    isErrorEnvelope(t, res.json(), 'AUTH_REQUIRED')
  })
})

t.test('MODE prefix with slashes mounts every API route under it', async (t) => {
  const app = await build(t, { MODE: 'dev/v2' })
  t.equal((await app.inject('/dev/v2/health')).statusCode, 200)
  t.equal((await app.inject('/api/v1/health')).statusCode, 404)
  t.equal((await app.inject('/health')).statusCode, 200, 'probes stay unprefixed')
})

t.test('a route that declares no access refuses to register (SR-24)', async (t) => {
  const app = Fastify()
  await app.register(access)
  app.get('/probe/declared', { config: { public: true } }, async () => 'x')
  t.throws(() => app.get('/probe/undeclared', async () => 'x'), /declares neither config.public nor config.permissions/)
  await app.close()
})
