import t from 'tap'
import { eq } from 'drizzle-orm'
import type { FastifyInstance, InjectOptions } from 'fastify'
import { build } from '../helpers/build.ts'
import { createUser, defaultPassword } from '../helpers/users.ts'
import { activityLog } from '../../db/schema/index.ts'
import { loadConfig } from '../../config.ts'

/**
 * The automatic rows: a mutating request that wrote no audit row gets exactly
 * one row (route pattern, status, duration, parsed user agent; never the body),
 * reads and unknown routes get none, and ACTIVITY_LOG_REQUESTS switches them off.
 * ACTIVITY_LOG_CLIENT_ERRORS decides which 4xx answers get one: by default only
 * those of routes without an audit row of their own (`config.audited`).
 */
const api = '/api/v1'
const iphone = 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1'
const clientIp = '203.0.113.7'
// No timer flush in the middle of a test: rows are written when the test calls flush().
const quiet = { ACTIVITY_FLUSH_INTERVAL_MS: '60000', LOAD_SHED_EVENT_LOOP_DELAY_MS: '0' }

function client (app: FastifyInstance) {
  let seq = 0
  return async (options: InjectOptions & { url: string }) => {
    const requestId = `sr38-request-${String(++seq).padStart(3, '0')}`
    const res = await app.inject({ ...options, remoteAddress: clientIp, headers: { 'user-agent': iphone, 'x-request-id': requestId, ...options.headers } })
    return Object.assign(res, { requestId })
  }
}

async function rowsOf (app: FastifyInstance, requestId: string) {
  await app.activity.flush()
  return app.db.select().from(activityLog).where(eq(activityLog.request_id, requestId))
}

t.test('SR-38: a mutating request without an auth event gets one automatic row; reads and unknown routes get none (ACTIVITY_LOG_CLIENT_ERRORS=all)', async (t) => {
  const app = await build(t, { ...quiet, ACTIVITY_LOG_CLIENT_ERRORS: 'all' })
  const call = client(app)
  const u = await createUser(app)
  const login = (await call({ method: 'POST', url: `${api}/auth/login-with-password`, payload: { identifier: u.email, password: defaultPassword } })).json().data
  const auth = { authorization: `Bearer ${login.access_token}` }

  const info = await call({ method: 'POST', url: `${api}/auth/token-info`, headers: auth, payload: { token: login.session_token } })
  t.equal(info.statusCode, 200)
  const [row, ...extra] = await rowsOf(app, info.requestId)
  t.same(extra, [], 'one row')
  t.match(row, {
    level: 'info',
    action: 'request',
    module: 'auth',
    user_id: u.user_id,
    session_id: login.session_id,
    ip_address: clientIp,
    device: 'mobile',
    browser: 'Mobile Safari 17',
    os: 'iOS 17.5',
    endpoint: `${api}/auth/token-info`,
    method: 'POST',
    status_code: 200,
    request_id: info.requestId,
    metadata: null
  })
  t.type(row.duration_ms, 'number')
  t.notOk(JSON.stringify(row).includes(login.session_token), 'the body (a token here) is never stored')

  const missing = await call({ method: 'DELETE', url: `${api}/auth/sessions/00000000-0000-4000-8000-000000000000`, headers: auth })
  t.equal(missing.statusCode, 404)
  const [failedRow] = await rowsOf(app, missing.requestId)
  t.match(failedRow, { level: 'warning', status_code: 404, endpoint: `${api}/auth/sessions/:session_id`, metadata: { params: { session_id: '00000000-0000-4000-8000-000000000000' }, error: 'NOT_FOUND' } })

  const unauthenticated = await call({ method: 'POST', url: `${api}/auth/logout`, headers: { authorization: 'Bearer not-a-token' } })
  t.equal(unauthenticated.statusCode, 401)
  const [anonymous] = await rowsOf(app, unauthenticated.requestId)
  t.match(anonymous, { user_id: null, status_code: 401, level: 'warning', metadata: { error: 'AUTH_INVALID_TOKEN' } })

  const read = await call({ url: `${api}/auth/sessions`, headers: auth })
  t.equal(read.statusCode, 200)
  t.same(await rowsOf(app, read.requestId), [], 'a GET writes nothing')
  const unknown = await call({ method: 'POST', url: `${api}/no-such-route` })
  t.equal(unknown.statusCode, 404)
  t.same(await rowsOf(app, unknown.requestId), [], 'an unknown route writes nothing')
})

t.test('ACTIVITY_LOG_REQUESTS=false turns the automatic rows off, never the audit rows', async (t) => {
  const app = await build(t, { ...quiet, ACTIVITY_LOG_REQUESTS: 'false' })
  const call = client(app)
  const u = await createUser(app)
  const login = await call({ method: 'POST', url: `${api}/auth/login-with-password`, payload: { identifier: u.email, password: defaultPassword } })
  t.same((await rowsOf(app, login.requestId)).map((r) => r.action), ['login_success'])
  const info = await call({ method: 'POST', url: `${api}/auth/token-info`, headers: { authorization: `Bearer ${login.json().data.access_token}` } })
  t.equal(info.statusCode, 200)
  t.same(await rowsOf(app, info.requestId), [])
})

t.test('issue 18: by default (unaudited) 4xx answers of audited routes get no automatic row; other routes and audit rows are kept', async (t) => {
  const app = await build(t, quiet)
  t.equal(app.config.ACTIVITY_LOG_CLIENT_ERRORS, 'unaudited', 'the default')
  const call = client(app)
  const u = await createUser(app)
  const login = (await call({ method: 'POST', url: `${api}/auth/login-with-password`, payload: { identifier: u.email, password: defaultPassword } })).json().data
  const auth = { authorization: `Bearer ${login.access_token}` }

  const missing = await call({ method: 'DELETE', url: `${api}/auth/sessions/00000000-0000-4000-8000-000000000000`, headers: auth })
  t.equal(missing.statusCode, 404)
  t.same(await rowsOf(app, missing.requestId), [], 'an audited route: its 404 writes nothing')
  const badToken = await call({ method: 'POST', url: `${api}/auth/logout`, headers: { authorization: 'Bearer not-a-token' } })
  t.equal(badToken.statusCode, 401)
  t.same(await rowsOf(app, badToken.requestId), [], 'nor its 401')
  const invalid = await call({ method: 'POST', url: `${api}/auth/change-password`, headers: auth, payload: { new_password: 'x' } })
  t.equal(invalid.statusCode, 400)
  t.same(await rowsOf(app, invalid.requestId), [], 'nor a validation error')

  const wrong = await call({ method: 'POST', url: `${api}/auth/login-with-password`, payload: { identifier: u.email, password: 'not the password' } })
  t.equal(wrong.statusCode, 401)
  t.same((await rowsOf(app, wrong.requestId)).map((r) => [r.action, r.status_code]), [['login_failed', 401]], 'the audit row of a refusal stays')

  const unaudited = await call({ method: 'POST', url: `${api}/auth/token-info`, payload: { token: 'not-a-token' } })
  t.equal(unaudited.statusCode, 401)
  t.match(await rowsOf(app, unaudited.requestId), [{ action: 'request', status_code: 401, level: 'warning' }], 'a route without audit rows keeps its 4xx rows')
  const ok = await call({ method: 'POST', url: `${api}/auth/token-info`, headers: auth })
  t.match(await rowsOf(app, ok.requestId), [{ action: 'request', status_code: 200 }], 'and its successes')
})

t.test('issue 18: ACTIVITY_LOG_CLIENT_ERRORS=none drops every 4xx automatic row, never a 2xx one or an audit row', async (t) => {
  const app = await build(t, { ...quiet, ACTIVITY_LOG_CLIENT_ERRORS: 'none' })
  const call = client(app)
  const u = await createUser(app)
  const refused = await call({ method: 'POST', url: `${api}/auth/token-info`, payload: { token: 'not-a-token' } })
  t.equal(refused.statusCode, 401)
  t.same(await rowsOf(app, refused.requestId), [])
  const wrong = await call({ method: 'POST', url: `${api}/auth/login-with-password`, payload: { identifier: u.email, password: 'not the password' } })
  t.same((await rowsOf(app, wrong.requestId)).map((r) => r.action), ['login_failed'])
  const login = (await call({ method: 'POST', url: `${api}/auth/login-with-password`, payload: { identifier: u.email, password: defaultPassword } })).json().data
  const ok = await call({ method: 'POST', url: `${api}/auth/token-info`, headers: { authorization: `Bearer ${login.access_token}` } })
  t.equal(ok.statusCode, 200)
  t.match(await rowsOf(app, ok.requestId), [{ action: 'request', status_code: 200 }])
})

t.test('issue 18: ACTIVITY_LOG_CLIENT_ERRORS takes none, unaudited or all', async (t) => {
  t.equal(loadConfig({ ACTIVITY_LOG_CLIENT_ERRORS: 'all' }).ACTIVITY_LOG_CLIENT_ERRORS, 'all')
  t.throws(() => loadConfig({ ACTIVITY_LOG_CLIENT_ERRORS: 'some' }), { name: 'ConfigError' })
})

t.test('row ids are time-ordered (UUIDv7), so the primary key grows at one end', async (t) => {
  const app = await build(t, quiet)
  const call = client(app)
  const ids: string[] = []
  for (let i = 0; i < 5; i++) {
    const res = await call({ method: 'POST', url: `${api}/auth/token-info`, payload: { token: 'not-a-token' } })
    const [row] = await rowsOf(app, res.requestId)
    t.ok(row, `request ${i + 1} has its row`)
    ids.push(row.log_id)
  }
  for (const id of ids) t.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, 'a version-7 UUID')
  t.same([...ids].sort(), ids, 'in the order the rows were made')
  const millis = Number.parseInt(ids[0].replace(/-/g, '').slice(0, 12), 16)
  t.ok(Math.abs(millis - Date.now()) < 60_000, 'carrying the time it was made')
})
