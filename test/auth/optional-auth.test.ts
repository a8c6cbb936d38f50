import t from 'tap'
import { Type } from '@sinclair/typebox'
import Fastify, { type FastifyInstance } from 'fastify'
import access from '../../plugins/app/auth/access.ts'
import { AppError } from '../../schemas/errors.ts'
import { build } from '../helpers/build.ts'
import { bearer, createUser, login } from '../helpers/users.ts'

// A public route declared `auth: 'optional'` accepts a credential without requiring
// one. The probe answers who the caller is and, when a presented credential was
// refused, why (kept for a service that needs a signed-in caller).
const probe = async (app: FastifyInstance) => {
  app.get('/probe/optional', {
    config: { public: true, auth: 'optional' },
    schema: { response: { 200: Type.Object({ actor: Type.Union([Type.String(), Type.Null()]), refused: Type.Union([Type.String(), Type.Null()]) }) } }
  }, async (request) => {
    const failure = request.caller.authFailure
    return { actor: request.caller.actor?.userId ?? null, refused: failure instanceof AppError ? failure.code : null }
  })
}

const app = await build(t, {}, { plugins: [probe] })
const account = await createUser(app)
const tokens = await login(app, account.email!)
const url = '/probe/optional'

t.test('SR-24: a public route with optional auth answers an anonymous caller', async (t) => {
  const res = await app.inject({ url })
  t.equal(res.statusCode, 200, res.body)
  t.same(res.json(), { actor: null, refused: null }, 'no credential: anonymous, nothing refused')
})

t.test('SR-24: a public route with optional auth authenticates a presented credential', async (t) => {
  for (const headers of [bearer(tokens.access_token), bearer(tokens.session_token), { 'x-session-token': tokens.session_token }]) {
    const res = await app.inject({ url, headers })
    t.equal(res.statusCode, 200, res.body)
    t.same(res.json(), { actor: account.user_id, refused: null }, `the caller is the signed-in user (${Object.keys(headers)[0]})`)
  }
})

t.test('SR-17: a refused credential leaves the caller anonymous and keeps the refusal', async (t) => {
  const garbage = await app.inject({ url, headers: bearer('not-a-token') })
  t.equal(garbage.statusCode, 200, garbage.body)
  t.same(garbage.json(), { actor: null, refused: 'AUTH_INVALID_TOKEN' })
  const inQuery = await app.inject({ url: `${url}?access_token=${tokens.access_token}` })
  t.same(inQuery.json(), { actor: null, refused: 'AUTH_INVALID_TOKEN' }, 'never from the query string')
  await app.inject({ method: 'POST', url: '/api/v1/auth/logout', headers: bearer(tokens.access_token) })
  const revoked = await app.inject({ url, headers: bearer(tokens.access_token) })
  t.same(revoked.json(), { actor: null, refused: 'AUTH_SESSION_REVOKED' }, 'a revoked session is not an actor')
})

t.test('SR-24: optional auth is documented as optional, and only on public routes', async (t) => {
  const doc = app.swagger() as { paths: Record<string, Record<string, { security?: unknown[] }>> }
  const sendOtp = Object.entries(doc.paths).find(([path]) => path.endsWith('/auth/send-one-time-password'))
  t.ok(sendOtp, 'send-one-time-password is in the document')
  t.same(sendOtp![1].post.security, [{}, { oauth2: [] }, { bearerAuth: [] }, { sessionToken: [] }], 'the credential is optional: {} first')
  // The declaration check alone, on a bare instance: a route cannot make a credential optional without being public.
  const bare = Fastify()
  t.teardown(() => bare.close())
  const declared = (async () => {
    await bare.register(access)
    bare.get('/probe/not-public', { config: { auth: 'optional' } }, async () => ({}))
    await bare.ready()
  })()
  await t.rejects(declared, /auth: 'optional' without config.public/)
})
