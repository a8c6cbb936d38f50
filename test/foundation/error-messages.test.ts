import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { Type } from '@sinclair/typebox'
import { build } from '../helpers/build.ts'
import { bearer, createUser, login } from '../helpers/users.ts'
import { StrictObject } from '../../schemas/envelope.ts'
import { bodyOptional } from '../../plugins/app/http/envelope.ts'
import { catalogs, languages } from '../../i18n/index.ts'

/**
 * The wording of error answers (issue 15 item 9): validation details name the
 * allowed values once and speak the caller's language; valid JSON, empty JSON
 * bodies, preflights and content encodings get answers that say what happened.
 */
const Color = Type.Union([Type.Literal('red'), Type.Literal('green'), Type.Literal('blue')])

const probes = async (app: FastifyInstance) => {
  app.post('/probe/form', {
    config: { public: true },
    schema: {
      querystring: Type.Object({ shade: Type.Optional(Color) }),
      body: StrictObject({
        name: Type.String({ minLength: 2, maxLength: 5 }),
        color: Type.Optional(Color),
        size: Type.Optional(Type.Integer({ minimum: 1, maximum: 9 })),
        code: Type.Optional(Type.String({ pattern: '^[A-Z]+$' })),
        email: Type.Optional(Type.String({ format: 'email' })),
        tags: Type.Optional(Type.Array(Type.String(), { maxItems: 1 })),
        kind: Type.Optional(Type.Literal('fixed'))
      })
    }
  }, async (request, reply) => reply.ok(request.body))
  app.post('/probe/optional', {
    config: { public: true },
    preValidation: bodyOptional,
    schema: { body: StrictObject({ note: Type.Optional(Type.String()) }) }
  }, async (request, reply) => reply.ok(request.body))
}

const post = (app: FastifyInstance, url: string, payload: unknown, headers: Record<string, string> = {}) =>
  app.inject({ method: 'POST', url, headers: { 'content-type': 'application/json', ...headers }, payload: typeof payload === 'string' ? payload : JSON.stringify(payload) })

t.test('SR-29: a union of literals fails with one "must be one of" naming the values, not per-member constants', async (t) => {
  const app = await build(t, {}, { plugins: [probes] })
  const res = await post(app, '/probe/form?shade=purple', { name: 'ab', color: 'purple' })
  t.equal(res.statusCode, 400)
  const details = res.json().error.details as Array<{ field: string, message: string, allowed?: unknown[] }>
  t.same(details.filter((d) => d.field === 'body/color'), [{ field: 'body/color', message: 'must be one of: red, green, blue', allowed: ['red', 'green', 'blue'] }], 'one entry for the body field')
  t.notMatch(res.body, /constant|anyOf/, 'no per-member noise')

  const query = await app.inject({ method: 'POST', url: '/probe/form?shade=purple', payload: { name: 'ab' } })
  t.same(query.json().error.details, [{ field: 'querystring/shade', message: 'must be one of: red, green, blue', allowed: ['red', 'green', 'blue'] }], 'likewise in the query string')

  const single = await post(app, '/probe/form', { name: 'ab', kind: 'other' })
  t.same(single.json().error.details, [{ field: 'body/kind', message: 'must be fixed', allowed: ['fixed'] }], 'a lone literal names its value')

  // A real route: the logout scope is such a union.
  const user = await createUser(app, { email: 'scope@example.com' })
  const { access_token: token } = await login(app, user.email!)
  const logout = await post(app, '/api/v1/auth/logout', { scope: 'everything' }, bearer(token))
  t.equal(logout.statusCode, 400)
  t.same(logout.json().error.details, [{ field: 'body/scope', message: 'must be one of: current, others, all', allowed: ['current', 'others', 'all'] }])
})

t.test('SR-29: every validation detail is translated under ?lang and Accept-Language', async (t) => {
  const app = await build(t, {}, { plugins: [probes] })
  const bad = { color: 'purple', size: 0, code: 'abc', email: 'not-an-email', tags: ['a', 'b'], extra: 1, kind: 'other' }
  const english = (await post(app, '/probe/form', bad)).json().error.details as Array<{ field: string, message: string }>
  const expected: Record<string, [string, Record<string, string | number>]> = {
    'body/name': ['validation.required', {}],
    'body/color': ['validation.enum', { allowed: 'red, green, blue' }],
    'body/size': ['validation.minimum', { limit: 1 }],
    'body/code': ['validation.pattern', { pattern: '^[A-Z]+$' }],
    'body/email': ['validation.format', { format: 'email' }],
    'body/tags': ['validation.maxItems', { limit: 1 }],
    'body/extra': ['validation.additionalProperties', {}],
    'body/kind': ['validation.const', { allowed: 'fixed' }]
  }
  t.same(english.map((d) => d.field).sort(), Object.keys(expected).sort(), 'one entry per problem, naming the field')
  const fill = (text: string, params: Record<string, string | number>) => text.replace(/\{(\w+)\}/g, (_, name: string) => String(params[name]))
  for (const lang of languages) {
    const res = await post(app, `/probe/form?lang=${lang}`, bad)
    t.equal(res.headers['content-language'], lang)
    for (const detail of res.json().error.details as Array<{ field: string, message: string }>) {
      const [key, params] = expected[detail.field]
      t.equal(detail.message, fill(catalogs[lang][key], params), `${lang} ${detail.field}`)
    }
  }
  const viaHeader = await post(app, '/probe/form', { name: 'a' }, { 'accept-language': 'fr' })
  t.same(viaHeader.json().error.details, [{ field: 'body/name', message: catalogs.fr['validation.minLength'].replace('{limit}', '2') }], 'Accept-Language too')
  t.not(catalogs.fr['validation.minLength'], catalogs.en['validation.minLength'], 'and French is not English')
})

t.test('every validation keyword of the API\'s schemas has a catalog message', async (t) => {
  const app = await build(t)
  const keywords = new Set<string>()
  const validating = new Set(['required', 'type', 'enum', 'const', 'minLength', 'maxLength', 'pattern', 'format', 'minimum', 'maximum',
    'exclusiveMinimum', 'exclusiveMaximum', 'multipleOf', 'minItems', 'maxItems', 'uniqueItems', 'minProperties', 'maxProperties',
    'additionalProperties', 'anyOf', 'oneOf', 'not'])
  const walk = (node: unknown) => {
    if (Array.isArray(node)) return node.forEach(walk)
    if (!node || typeof node !== 'object') return
    for (const [key, value] of Object.entries(node)) {
      if (validating.has(key) && !(key === 'additionalProperties' && value === true)) keywords.add(key)
      if (key !== 'properties' && key !== 'example' && key !== 'examples') walk(value)
      else if (key === 'properties' && value && typeof value === 'object') Object.values(value).forEach(walk)
    }
  }
  walk(app.swagger())
  t.ok(keywords.has('pattern') && keywords.has('format') && keywords.has('anyOf'), `the walk finds keywords (${[...keywords].sort().join(', ')})`)
  const missing = [...keywords].filter((k) => typeof catalogs.en[`validation.${k}`] !== 'string')
  t.same(missing, [], 'each has validation.<keyword>')
})

t.test('SR-29: a __proto__ or constructor.prototype key is refused as such, not as invalid JSON', async (t) => {
  const app = await build(t, {}, { plugins: [probes] })
  const proto = await post(app, '/probe/form', '{"name":"ab","__proto__":{"is_admin":true}}')
  t.equal(proto.statusCode, 400)
  t.equal(proto.json().error.code, 'VALIDATION_ERROR')
  t.same(proto.json().error.details, [{ field: 'body', message: 'the key __proto__ is not allowed in a JSON body', forbidden_key: '__proto__' }])

  const ctor = await post(app, '/probe/form?lang=de', '{"name":"ab","constructor":{"prototype":{"x":1}}}')
  t.equal(ctor.json().error.code, 'VALIDATION_ERROR')
  t.same(ctor.json().error.details, [{ field: 'body', message: catalogs.de['validation.forbiddenKey'].replace('{key}', 'constructor.prototype'), forbidden_key: 'constructor.prototype' }])

  const broken = await post(app, '/probe/form', '{"name": "ab",')
  t.equal(broken.json().error.code, 'MALFORMED_JSON', 'JSON that does not parse is still MALFORMED_JSON')
})

t.test('an empty body sent as application/json is no body: the route\'s schema decides', async (t) => {
  const app = await build(t, {}, { plugins: [probes] })
  const optional = await post(app, '/probe/optional', '')
  t.equal(optional.statusCode, 200, 'a route whose body is optional answers')
  t.same(optional.json().data, {})
  const required = await post(app, '/probe/form', '')
  t.equal(required.statusCode, 400)
  t.equal(required.json().error.code, 'VALIDATION_ERROR', 'a route that needs a body says so, not MALFORMED_JSON')
  t.equal(required.json().error.details[0].field, 'body')

  // What fetch and axios send on a bodiless logout.
  const user = await createUser(app, { email: 'empty@example.com' })
  const { access_token: token } = await login(app, user.email!)
  const logout = await post(app, '/api/v1/auth/logout', '', bearer(token))
  t.equal(logout.statusCode, 200)
  t.equal(logout.json().data.scope, 'current')
})

t.test('SR-32: without an allow-list a CORS preflight gets 204 without CORS headers, with the security headers', async (t) => {
  const app = await build(t, { CORS_ORIGINS: '' })
  const preflight = await app.inject({
    method: 'OPTIONS',
    url: '/api/v1/auth/logout',
    headers: { origin: 'https://app.example.com', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization' }
  })
  t.equal(preflight.statusCode, 204)
  t.equal(preflight.body, '')
  t.notOk(preflight.headers['access-control-allow-origin'], 'no grant')
  t.notOk(preflight.headers['access-control-allow-headers'])
  t.equal(preflight.headers['x-content-type-options'], 'nosniff', 'security headers (SR-31)')
  t.ok(preflight.headers['x-request-id'])
  t.equal((await app.inject({ method: 'GET', url: '/api/v1/nope' })).statusCode, 404, 'unknown paths are still 404')
  t.equal((await app.inject({ method: 'DELETE', url: '/health' })).statusCode, 405, 'and other wrong methods 405')
})

t.test('a Content-Encoding the server does not decode is 415 UNSUPPORTED_CONTENT_ENCODING, not a Content-Type complaint', async (t) => {
  const app = await build(t)
  const res = await app.inject({
    method: 'POST',
    url: '/api/v1/auth/login-with-password?lang=es',
    headers: { 'content-type': 'application/json', 'content-encoding': 'zstd' },
    payload: Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0])
  })
  t.equal(res.statusCode, 415)
  const error = res.json().error
  t.equal(error.code, 'UNSUPPORTED_CONTENT_ENCODING')
  t.equal(error.message, catalogs.es['errors.UNSUPPORTED_CONTENT_ENCODING'])
  t.notMatch(catalogs.en['errors.UNSUPPORTED_CONTENT_ENCODING'], /Content-Type/)
  t.same(error.details, { encoding: 'zstd', accepted: ['identity', 'br', 'gzip', 'deflate'] })
})
