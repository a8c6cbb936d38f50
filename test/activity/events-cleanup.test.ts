import t from 'tap'
import { randomUUID } from 'node:crypto'
import { eq } from 'drizzle-orm'
import type { FastifyInstance } from 'fastify'
import { build } from '../helpers/build.ts'
import { bearer, createUser, login } from '../helpers/users.ts'
import { activityLog, type NewActivityLog } from '../../db/schema/index.ts'

const api = '/api/v1'
const DAY = 86_400_000
const env = { ACTIVITY_FLUSH_INTERVAL_MS: '60000', LOAD_SHED_EVENT_LOOP_DELAY_MS: '0' }

async function signIn (app: FastifyInstance, groups: string[]) {
  const u = await createUser(app, { groups })
  const tokens = await login(app, u.email!)
  return { id: u.user_id, sessionId: tokens.session_id, headers: bearer(tokens.access_token) }
}

/** Rows inserted straight into the table: the list routes must find exactly these. */
async function seed (app: FastifyInstance, rows: Array<Partial<NewActivityLog> & { created_at: Date }>) {
  const values = rows.map((r) => ({ level: 'info' as const, action: 'seeded', module: 'seed', log_id: randomUUID(), ...r }))
  await app.db.insert(activityLog).values(values)
  return values
}

const get = (app: FastifyInstance, url: string, headers: Record<string, string>) => app.inject({ url: `${api}${url}`, headers })

t.test('SR-39: a client event cannot forge server-side fields', async (t) => {
  const app = await build(t, { ...env, ACTIVITY_CLIENT_EVENTS_PER_MINUTE: '5' })
  const user = await signIn(app, ['user'])
  const victim = randomUUID()
  const post = (payload: unknown, headers: Record<string, string> = {}) =>
    app.inject({ method: 'POST', url: `${api}/activity`, payload: payload as object, remoteAddress: '192.0.2.10', headers: { ...user.headers, 'user-agent': 'okhttp/4.12.0', ...headers } })

  const forged = ['user_id', 'target_user_id', 'ip_address', 'user_agent', 'request_id', 'session_id', 'created_at', 'endpoint', 'status_code']
  for (const field of forged) {
    const res = await post({ action: 'page_view', [field]: field === 'status_code' ? 200 : field.endsWith('_id') ? victim : 'forged' })
    t.equal(res.statusCode, 400, `${field} in the body is refused`)
    t.equal(res.json().error.details[0].unknown_field, field)
  }
  t.equal((await post({ action: 'page_view', level: 'critical' })).statusCode, 400, 'critical is the server\'s level')
  t.equal((await post({ action: 'Page View' })).statusCode, 400, 'action is a plain name')
  t.equal((await post({ action: 'big', metadata: { blob: 'x'.repeat(5000) } })).json().error.details[0].field, 'body/metadata', 'metadata is capped')

  const res = await post(
    { action: 'page_view', module: 'auth', message: 'opened settings', level: 'warning', metadata: { page: '/settings', token: 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.x', nested: { password: 'hunter2' } } },
    { 'x-forwarded-for': '10.9.9.9', 'x-request-id': 'client-event-request-1' }
  )
  t.equal(res.statusCode, 201)
  const accepted = res.json().data
  t.match(accepted, { action: 'page_view', module: 'client.auth', level: 'warning' })
  await app.activity.flush()
  const [row] = await app.db.select().from(activityLog).where(eq(activityLog.log_id, accepted.log_id))
  t.match(row, {
    user_id: user.id,
    session_id: user.sessionId,
    target_user_id: null,
    ip_address: '192.0.2.10',
    request_id: 'client-event-request-1',
    user_agent: 'okhttp/4.12.0',
    browser: 'okhttp 4',
    endpoint: `${api}/activity`,
    method: 'POST',
    module: 'client.auth',
    message: 'opened settings'
  }, 'everything but the event itself is the server\'s: the forwarded IP from an untrusted client is ignored')
  t.same(row.metadata, { page: '/settings', token: '[redacted]', nested: { password: '[redacted]' } }, 'secret-looking metadata is redacted')
  t.equal(row.created_at.toISOString(), accepted.created_at)
  t.equal(row.module.startsWith('client'), true, 'a client cannot write into a server module')

  for (let i = 0; i < 4; i++) await post({ action: 'spam' })
  const limited = await post({ action: 'spam' })
  t.equal(limited.statusCode, 429, 'client events are rate limited per user')
  t.equal((await app.inject({ method: 'POST', url: `${api}/activity`, payload: { action: 'x' } })).statusCode, 401, 'only signed-in users')
})

t.test('statistics by level, action, module and day (zero-filled, in the time zone asked)', async (t) => {
  const clock = { at: Date.parse('2031-06-15T12:00:00Z') }
  const app = await build(t, env, { now: () => clock.at })
  const admin = await signIn(app, ['developer'])
  await seed(app, [
    { action: 'a', module: 'm1', level: 'info', created_at: new Date('2031-06-10T23:30:00Z') },
    { action: 'a', module: 'm1', level: 'warning', created_at: new Date('2031-06-11T01:00:00Z') },
    { action: 'b', module: 'm2', level: 'warning', created_at: new Date('2031-06-13T12:00:00Z') },
    { action: 'c', module: 'm2', level: 'error', created_at: new Date('2031-05-01T12:00:00Z') }
  ])
  const range = 'from=2031-06-10T00:00:00.000Z&to=2031-06-14T00:00:00.000Z'
  const utc = await get(app, `/activity/statistics?${range}`, admin.headers)
  t.equal(utc.statusCode, 200)
  t.same(utc.json().data, {
    from: '2031-06-10T00:00:00.000Z',
    to: '2031-06-14T00:00:00.000Z',
    tz: 'UTC',
    total: 3,
    by_level: [{ level: 'debug', count: 0 }, { level: 'info', count: 1 }, { level: 'warning', count: 2 }, { level: 'error', count: 0 }, { level: 'critical', count: 0 }],
    by_action: [{ action: 'a', count: 2 }, { action: 'b', count: 1 }],
    by_module: [{ module: 'm1', count: 2 }, { module: 'm2', count: 1 }],
    per_day: [
      { date: '2031-06-10', count: 1 }, { date: '2031-06-11', count: 1 }, { date: '2031-06-12', count: 0 },
      { date: '2031-06-13', count: 1 }, { date: '2031-06-14', count: 0 }
    ]
  })
  const tokyo = (await get(app, `/activity/statistics?${range}&tz=Asia/Tokyo`, admin.headers)).json().data
  t.same(tokyo.per_day, [
    { date: '2031-06-10', count: 0 }, { date: '2031-06-11', count: 2 }, { date: '2031-06-12', count: 0 },
    { date: '2031-06-13', count: 1 }, { date: '2031-06-14', count: 0 }
  ], 'both early rows fall on June 11 in Tokyo')
  const filtered = (await get(app, `/activity/statistics?${range}&module=m2`, admin.headers)).json().data
  t.equal(filtered.total, 1, 'the list filters apply')
  const defaults = (await get(app, '/activity/statistics?module=m2', admin.headers)).json().data
  t.equal(defaults.from, '2031-05-16T12:00:00.000Z', 'the last 30 days by default')
  t.equal(defaults.per_day.length, 31)
  t.equal((await get(app, '/activity/statistics?tz=Mars/Base', admin.headers)).statusCode, 400)
  t.equal((await get(app, '/activity/statistics?tz=%2B05:00', admin.headers)).statusCode, 400, 'offsets are refused (PostgreSQL reads them the other way round)')
  t.equal((await get(app, '/activity/statistics?from=2029-01-01T00:00:00Z&to=2031-01-01T00:00:00Z', admin.headers)).statusCode, 400, 'at most 366 days')
})

t.test('cleanup keeps the minimum retention, needs delete_activity_log, and is audited', async (t) => {
  const clock = { at: Date.parse('2031-06-15T12:00:00Z') }
  const app = await build(t, env, { now: () => clock.at })
  const admin = await signIn(app, ['admin'])
  const developer = await signIn(app, ['developer'])
  const now = clock.at
  await seed(app, [
    { action: 'old', created_at: new Date(now - 40 * DAY) },
    { action: 'old', created_at: new Date(now - 31 * DAY) },
    { action: 'recent', created_at: new Date(now - 29 * DAY) },
    { action: 'recent', created_at: new Date(now - DAY) }
  ])
  const count = async (action: string) => (await app.db.select().from(activityLog).where(eq(activityLog.action, action))).length
  const del = (days: string | number, headers = admin.headers) => app.inject({ method: 'DELETE', url: `${api}/activity/cleanup?days=${days}`, headers })

  const tooShort = await del(29)
  t.equal(tooShort.statusCode, 400)
  t.equal(tooShort.json().error.code, 'RETENTION_TOO_SHORT')
  t.same(tooShort.json().error.details, { days: 29, minimum_days: 30 })
  t.equal(await count('old'), 2, 'nothing deleted')
  t.equal((await del(1)).json().error.code, 'RETENTION_TOO_SHORT')
  t.equal((await del('')).statusCode, 400, 'days is required')
  t.equal((await del(30, developer.headers)).statusCode, 403, 'developers may read the log, not delete it')

  const done = await del(30)
  t.equal(done.statusCode, 200)
  t.same(done.json().data, { deleted: 2, cutoff: new Date(now - 30 * DAY).toISOString(), days: 30 })
  t.equal(await count('old'), 0)
  t.equal(await count('recent'), 2, 'younger rows kept')
  await app.activity.flush()
  const [audit] = await app.db.select().from(activityLog).where(eq(activityLog.action, 'activity_cleanup'))
  t.match(audit, { user_id: admin.id, module: 'activity', metadata: { days: 30, deleted: 2 } })
})

t.test('the minimum retention is configurable', async (t) => {
  const app = await build(t, { ...env, ACTIVITY_MIN_RETENTION_DAYS: '90' })
  const admin = await signIn(app, ['admin'])
  const res = await app.inject({ method: 'DELETE', url: `${api}/activity/cleanup?days=60`, headers: admin.headers })
  t.equal(res.json().error.code, 'RETENTION_TOO_SHORT')
  t.equal((await app.inject({ method: 'DELETE', url: `${api}/activity/cleanup?days=90`, headers: admin.headers })).statusCode, 200)
})
