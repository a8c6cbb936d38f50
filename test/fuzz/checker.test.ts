import t from 'tap'
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify'
import { Type } from '@sinclair/typebox'
import { build } from '../helpers/build.ts'
import { fastEnv } from '../admin/helpers.ts'
import { Envelope } from '../../schemas/envelope.ts'
import { answerProblem, fuzz, fuzzSeed, operationsOf } from './checker.ts'

/**
 * The checker itself: test doubles of broken routes (one throws a plain Error
 * on hostile input, one answers a raw body outside the envelope, one drops the
 * security headers) must make the fuzz run fail; a sound route must not.
 */
const brokenRoutes = async (app: FastifyInstance) => {
  app.get('/probe/throws', {
    config: { public: true },
    schema: { querystring: Type.Object({ name: Type.Optional(Type.String({ maxLength: 20_000 })) }), response: { 200: Envelope(Type.Object({ name: Type.String() })) } }
  }, async (request, reply) => {
    const { name } = request.query as { name?: string }
    if (name !== undefined && name.length > 3) throw new Error('an unexpected failure')
    return reply.ok({ name: name ?? '' })
  })
  app.post('/probe/raw', {
    config: { public: true },
    schema: { body: Type.Object({ text: Type.Optional(Type.String({ maxLength: 20_000 })) }), response: { 200: Envelope(Type.Object({ ok: Type.Boolean() })) } }
  }, async (request, reply) => {
    if (!(request.body as { text?: string }).text) return (reply as FastifyReply).code(400).type('text/plain').send('bad input')
    return reply.ok({ ok: true })
  })
  app.get('/probe/sound', {
    config: { public: true },
    schema: { querystring: Type.Object({ name: Type.Optional(Type.String({ maxLength: 20 })) }), response: { 200: Envelope(Type.Object({ name: Type.String() })) } }
  }, async (request, reply) => reply.ok({ name: (request.query as { name?: string }).name ?? '' }))
}

t.test('a route that throws a plain Error, or answers a raw body, fails the fuzz run', async (t) => {
  const app = await build(t, fastEnv, { plugins: [brokenRoutes] })
  const ops = operationsOf(app.swagger()).filter((op) => op.path.startsWith('/probe/'))
  t.equal(ops.length, 3)
  const byPath = (path: string) => ops.filter((op) => op.path === path)

  const thrown = await fuzz(app, byPath('/probe/throws'), { seed: fuzzSeed(), runs: 50, healthUrl: '/health' })
  t.equal(thrown.findings.length, 1, 'the 500 is found')
  t.match(thrown.findings[0]?.report, /status 500/)
  t.match(thrown.findings[0]?.report, /replay: seed/, 'with what replays it')

  const raw = await fuzz(app, byPath('/probe/raw'), { seed: fuzzSeed(), runs: 50 })
  t.equal(raw.findings.length, 1, 'the raw body is found')
  t.match(raw.findings[0]?.report, /content-type text\/plain/)

  const sound = await fuzz(app, byPath('/probe/sound'), { seed: fuzzSeed(), runs: 50, healthUrl: '/health' })
  t.same(sound.findings, [], 'a sound route passes')
  t.equal(sound.requests, 51, 'the budget is the budget: runs plus the health check')
})

t.test('the rule: status, envelope, request id and security headers', async (t) => {
  const bare = Fastify()
  bare.get('/plain', async () => { throw new Error('boom') })
  bare.get('/ok', async () => ({ hello: 'world' }))
  const plain = await bare.inject('/plain')
  t.match(answerProblem({ envelope: true, oauth: false }, plain), /status 500/)
  const ok = await bare.inject('/ok')
  t.match(answerProblem({ envelope: false, oauth: false }, ok), /header x-content-type-options/, 'no security headers')

  const app = await build(t)
  const headers = (await app.inject('/api/v1/nope')).headers
  const id = String(headers['x-request-id'])
  const error = (body: unknown, status = 400) => answerProblem({ envelope: true, oauth: false }, { statusCode: status, headers, body: JSON.stringify(body) })
  const timestamp = new Date().toISOString()
  t.equal(error({ success: false, error: { id, code: 'NOT_FOUND', message: 'x', timestamp } }), undefined, 'the envelope passes')
  t.match(error({ success: false, error: { id: 'other', code: 'NOT_FOUND', message: 'x', timestamp } }), /request id/)
  t.match(error({ success: false, error: { id, code: 'FST_ERR_BAD_URL', message: 'x', timestamp } }), /unknown error code/)
  t.match(error({ statusCode: 400, error: 'Bad Request', message: 'x' }), /not the error envelope/)
  t.match(error({ success: true, data: 1 }, 200), /not the success envelope/)
  t.match(answerProblem({ envelope: true, oauth: true }, { statusCode: 400, headers, body: '{"success":false}' }), /RFC 6749/)
  t.match(answerProblem({ envelope: true, oauth: false }, { statusCode: 302, headers, body: '' }), /status 302/)
})
