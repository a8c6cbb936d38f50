import t, { type Test } from 'tap'
import type { LightMyRequestResponse } from 'fastify'
import { build } from '../helpers/build.ts'
import { actor, api, fastEnv } from '../admin/helpers.ts'

/**
 * Hostile input answered at the schema boundary (SR-29, SR-33): NUL, lone
 * surrogates, deep JSON and cursors whose fields are not values are 400s in the
 * error envelope, never a 500 from the database or the stack.
 */
const cursor = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')

function refused (t: Test, res: LightMyRequestResponse, code: string, field?: string) {
  t.equal(res.statusCode, 400, `${code}: ${res.body.slice(0, 300)}`)
  const body = res.json()
  t.equal(body.success, false)
  t.equal(body.error.code, code)
  t.equal(body.error.id, res.headers['x-request-id'])
  if (field) t.ok(JSON.stringify(body.error.details ?? '').includes(field), `details name ${field}: ${JSON.stringify(body.error.details)}`)
  t.equal(res.headers['x-content-type-options'], 'nosniff')
}

t.test('SR-29/SR-33: NUL and lone surrogates are a 400 naming the field', async (t) => {
  const app = await build(t, fastEnv)
  const admin = await actor(app, { groups: ['super_admin'] })

  t.test('login identifier (public)', async (t) => {
    for (const identifier of ['a\u0000b@example.com', 'user\ud800']) {
      const res = await app.inject({ method: 'POST', url: `${api}/auth/login-with-password`, payload: { identifier, password: 'whatever-password' } })
      refused(t, res, 'VALIDATION_ERROR', 'body/identifier')
    }
  })

  t.test('/token answers RFC 6749 invalid_request', async (t) => {
    for (const payload of ['grant_type=password&username=a%00b&password=x', 'grant_type=password&username=a&password=x%00']) {
      const res = await app.inject({ method: 'POST', url: `${api}/token`, headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload })
      t.equal(res.statusCode, 400, res.body)
      t.equal(res.json().error, 'invalid_request')
    }
    for (const username of ['a\u0000', '\ud800']) {
      const json = await app.inject({ method: 'POST', url: `${api}/token`, payload: { grant_type: 'password', username, password: 'x' } })
      t.equal(json.statusCode, 400, json.body)
      t.equal(json.json().error, 'invalid_request')
    }
  })

  t.test('?q=%00 on users, groups and permissions; users?group=%00', async (t) => {
    for (const url of ['/users?q=%00', '/groups?q=%00', '/permissions?q=%00', '/users?group=%00']) {
      const res = await app.inject({ url: `${api}${url}`, headers: admin.headers })
      refused(t, res, 'VALIDATION_ERROR', 'querystring/')
    }
  })

  t.test('activity?action|module|ip=%00', async (t) => {
    for (const name of ['action', 'module', 'ip']) {
      const res = await app.inject({ url: `${api}/activity?${name}=%00`, headers: admin.headers })
      refused(t, res, 'VALIDATION_ERROR', `querystring/${name}`)
    }
  })

  t.test('group and permission description with NUL', async (t) => {
    const group = await app.inject({ method: 'POST', url: `${api}/groups`, headers: admin.headers, payload: { codename: 'nul_group', name: 'Nul', description: 'a\u0000b' } })
    refused(t, group, 'VALIDATION_ERROR', 'body/description')
    const permission = await app.inject({ method: 'POST', url: `${api}/permissions`, headers: admin.headers, payload: { codename: 'nul_perm', name: 'Nul', category: 'misc', description: 'x\u0000' } })
    refused(t, permission, 'VALIDATION_ERROR', 'body/description')
    const groups = (await app.inject({ url: `${api}/groups?limit=100`, headers: admin.headers })).json().data as Array<{ group_id: string, codename: string }>
    const adminGroup = groups.find((g) => g.codename === 'admin')!
    const update = await app.inject({ method: 'PUT', url: `${api}/groups/${adminGroup.group_id}`, headers: admin.headers, payload: { description: '\udc00' } })
    refused(t, update, 'VALIDATION_ERROR', 'body/description')
  })

  t.test('a path parameter with %00', async (t) => {
    const res = await app.inject({ url: `${api}/permissions/a%00b`, headers: admin.headers })
    refused(t, res, 'VALIDATION_ERROR', 'params/')
  })

  t.test('keys and nested values of free-form objects', async (t) => {
    const nested = await app.inject({ method: 'POST', url: `${api}/activity`, headers: admin.headers, payload: { action: 'page_view', metadata: { a: { b: ['ok', 'x\u0000'] } } } })
    refused(t, nested, 'VALIDATION_ERROR', 'body/metadata/a/b/1')
    const key = await app.inject({ method: 'POST', url: `${api}/activity`, headers: admin.headers, payload: { action: 'page_view', metadata: { 'k\u0000': 1 } } })
    refused(t, key, 'VALIDATION_ERROR', 'body/metadata')
  })

  t.test('well-formed text outside the BMP still passes', async (t) => {
    const res = await app.inject({ method: 'POST', url: `${api}/activity`, headers: admin.headers, payload: { action: 'page_view', message: 'ok 😀 ünïcode', metadata: { emoji: '😀' } } })
    t.equal(res.statusCode, 201, res.body)
  })
})

t.test('SR-29/SR-33: JSON nested 500,000 deep is a 400, not a RangeError', async (t) => {
  const app = await build(t, fastEnv)
  const admin = await actor(app, { groups: ['super_admin'] })
  const depth = 500_000
  const payload = `{"action":"page_view","metadata":{"a":${'['.repeat(depth)}${']'.repeat(depth)}}}`
  const res = await app.inject({ method: 'POST', url: `${api}/activity`, headers: { ...admin.headers, 'content-type': 'application/json' }, payload })
  refused(t, res, 'VALIDATION_ERROR', 'body/metadata/a')
  const health = await app.inject({ url: '/health' })
  t.equal(health.statusCode, 200, 'still up')
})

t.test('SR-29/SR-33: cursors whose fields are not values are a 400', async (t) => {
  const app = await build(t, fastEnv)
  const admin = await actor(app, { groups: ['super_admin'] })
  const userCursors = [
    cursor({ k: 'not-a-date', id: admin.id, s: 'created_at', o: 'desc' }),
    cursor({ k: '2026-02-30 10:00:00+00', id: admin.id, s: 'created_at', o: 'desc' }),
    cursor({ k: '-infinity', id: admin.id, s: 'created_at', o: 'desc' }),
    cursor({ k: 'x\u0000', id: admin.id, s: 'email', o: 'desc' }),
    cursor({ k: 'x\ud800', id: admin.id, s: 'email', o: 'desc' })
  ]
  for (const c of userCursors) {
    const sort = JSON.parse(Buffer.from(c, 'base64url').toString()).s
    refused(t, await app.inject({ url: `${api}/users?sort=${sort}&cursor=${c}`, headers: admin.headers }), 'VALIDATION_ERROR', 'querystring/cursor')
  }
  const uploadCursors = [
    cursor({ at: '+275760-09-13T00:00:00.000Z', id: admin.id }),
    cursor({ at: '2026-13-01T00:00:00.000Z', id: admin.id }),
    cursor({ at: '1', id: admin.id })
  ]
  for (const c of uploadCursors) {
    refused(t, await app.inject({ url: `${api}/upload/media?cursor=${c}`, headers: admin.headers }), 'VALIDATION_ERROR', 'querystring/cursor')
  }
  for (const c of [cursor({ after: 'x\u0000' }), cursor({ after: '\udfff' })]) {
    refused(t, await app.inject({ url: `${api}/groups?cursor=${c}`, headers: admin.headers }), 'VALIDATION_ERROR', 'querystring/cursor')
    refused(t, await app.inject({ url: `${api}/permissions?cursor=${c}`, headers: admin.headers }), 'VALIDATION_ERROR', 'querystring/cursor')
  }
  refused(t, await app.inject({ url: `${api}/activity?cursor=${cursor(['9999-99-99T00:00:00.000000Z', admin.id])}`, headers: admin.headers }), 'VALIDATION_ERROR', 'querystring/cursor')

  t.test('cursors the API issued still work', async (t) => {
    for (const sort of ['created_at', 'last_login', 'email']) {
      const first = await app.inject({ url: `${api}/users?sort=${sort}&limit=1`, headers: admin.headers })
      t.equal(first.statusCode, 200)
      const next = first.json().meta?.next_cursor ?? first.json().data?.next_cursor
      if (next) t.equal((await app.inject({ url: `${api}/users?sort=${sort}&limit=1&cursor=${next}`, headers: admin.headers })).statusCode, 200, sort)
    }
  })
})
