import t from 'tap'
import { randomUUID } from 'node:crypto'
import { eq, sql } from 'drizzle-orm'
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

t.test('GET /activity: every filter, newest first, ISO UTC times', async (t) => {
  const clock = { at: Date.parse('2031-06-15T12:00:00Z') }
  const app = await build(t, env, { now: () => clock.at })
  const admin = await signIn(app, ['developer'])
  const other = randomUUID()
  const someone = await createUser(app)
  const base = Date.parse('2031-06-10T00:00:00Z')
  const seeded = await seed(app, [
    { action: 'alpha', module: 'm1', level: 'info', ip_address: '198.51.100.1', user_id: someone.user_id, created_at: new Date(base) },
    { action: 'beta', module: 'm1', level: 'warning', ip_address: '198.51.100.2', user_id: someone.user_id, created_at: new Date(base + DAY) },
    { action: 'alpha', module: 'm2', level: 'error', ip_address: '198.51.100.1', created_at: new Date(base + 2 * DAY) },
    { action: 'gamma', module: 'm2', level: 'critical', ip_address: '2001:db8::1', target_user_id: other, created_at: new Date(base + 3 * DAY) }
  ])
  const ids = (res: { json: () => { data: Array<{ log_id: string }> } }) => res.json().data.map((r) => r.log_id)
  const expect = async (query: string, indexes: number[], label: string) => {
    const res = await get(app, `/activity?${query}`, admin.headers)
    t.equal(res.statusCode, 200, label)
    t.same(ids(res), indexes.map((i) => seeded[i].log_id), label)
  }
  await expect('module=m1', [1, 0], 'module')
  await expect('module=m2', [3, 2], 'module m2')
  await expect(`user_id=${someone.user_id}`, [1, 0], 'user')
  await expect('level=error', [2], 'level')
  await expect('action=alpha', [2, 0], 'action')
  await expect('ip=198.51.100.1', [2, 0], 'ip')
  await expect('ip=2001:db8::1', [3], 'IPv6 ip')
  await expect(`module=m1&from=${new Date(base + DAY).toISOString()}`, [1], 'from is inclusive')
  await expect(`module=m2&to=${new Date(base + 2 * DAY).toISOString()}`, [2], 'to is inclusive')
  await expect('action=alpha&level=info&ip=198.51.100.1', [0], 'filters combine')

  const one = (await get(app, '/activity?module=m2&limit=1', admin.headers)).json().data[0]
  t.equal(one.created_at, new Date(base + 3 * DAY).toISOString())
  t.match(one.created_at, /Z$/)
  t.equal(one.target_user_id, other)

  const bad = [
    ['user_id=not-a-uuid', 'querystring/user_id'],
    ['level=loud', 'querystring/level'],
    ['from=yesterday', 'querystring/from'],
    ['limit=101', 'querystring/limit'],
    [`from=${new Date(base + DAY).toISOString()}&to=${new Date(base).toISOString()}`, 'querystring/from'],
    ['cursor=bm90LWEtY3Vyc29y', 'querystring/cursor']
  ]
  for (const [query, field] of bad) {
    const res = await get(app, `/activity?${query}`, admin.headers)
    t.equal(res.statusCode, 400, query)
    t.equal(res.json().error.code, 'VALIDATION_ERROR')
    t.ok(JSON.stringify(res.json().error.details).includes(field), `${query} names ${field}`)
  }
})

t.test('keyset pagination is stable under concurrent inserts (ties and microseconds included)', async (t) => {
  const app = await build(t, env)
  const admin = await signIn(app, ['developer'])
  // 25 rows (older than anything written now): several share a timestamp, and PostgreSQL's
  // microseconds are kept (a millisecond cursor would skip some).
  await app.db.execute(sql`insert into activity_log (level, action, module, created_at)
    select 'info', 'page_test', 'paging', timestamptz '2020-01-01 00:00:00.000001+00' + (i / 3) * interval '1.000123 second'
    from generate_series(0, 24) as i`)
  const all = await app.db.select({ id: activityLog.log_id }).from(activityLog).where(eq(activityLog.module, 'paging'))
    .orderBy(sql`created_at desc, log_id desc`)
  const seen: string[] = []
  let cursor: string | null = null
  let pages = 0
  do {
    const res = await get(app, `/activity?module=paging&limit=10${cursor ? `&cursor=${cursor}` : ''}`, admin.headers)
    t.equal(res.statusCode, 200)
    const body = res.json()
    seen.push(...body.data.map((r: { log_id: string }) => r.log_id))
    cursor = body.meta.pagination.next_cursor
    t.equal(body.meta.pagination.limit, 10)
    pages++
    // Writers keep going between pages: newer rows, and rows with the very timestamp of the page's last row.
    await seed(app, [{ module: 'paging', action: 'concurrent', created_at: new Date() }])
    if (pages === 1) {
      await app.db.execute(sql`insert into activity_log (level, action, module, created_at)
        select 'info', 'just_after_cursor', 'paging', created_at + interval '1 microsecond' from activity_log where log_id = ${body.data.at(-1).log_id}`)
    }
  } while (cursor && pages < 10)
  t.equal(pages, 3, 'three pages of 10, 10 and 5')
  t.same(seen, all.map((r) => r.id), 'every original row exactly once, in order; nothing inserted meanwhile slipped in')

  const fresh = (await get(app, '/activity?module=paging&limit=5', admin.headers)).json().data
  t.same(fresh.slice(0, 3).map((r: { action: string }) => r.action), ['concurrent', 'concurrent', 'concurrent'], 'the new rows are on a new first page')
})

t.test('one entry; permissions; me shows only the caller', async (t) => {
  const app = await build(t, env)
  const admin = await signIn(app, ['developer'])
  const plain = await signIn(app, ['user'])
  const [mine, theirs] = await seed(app, [
    { user_id: plain.id, action: 'mine', created_at: new Date() },
    { user_id: admin.id, action: 'theirs', created_at: new Date() }
  ])

  const one = await get(app, `/activity/${mine.log_id}`, admin.headers)
  t.equal(one.statusCode, 200)
  t.equal(one.json().data.action, 'mine')
  t.equal((await get(app, `/activity/${randomUUID()}`, admin.headers)).json().error.code, 'ACTIVITY_NOT_FOUND')
  t.equal((await get(app, '/activity/not-a-uuid', admin.headers)).statusCode, 400)

  for (const url of ['/activity', `/activity/${mine.log_id}`, '/activity/statistics']) {
    const res = await get(app, url, plain.headers)
    t.equal(res.statusCode, 403, `${url} needs view_activity_log`)
  }
  t.equal((await get(app, '/activity', {})).statusCode, 401)

  const me = await get(app, `/activity/me?user_id=${admin.id}`, plain.headers)
  t.equal(me.statusCode, 200)
  const actors = new Set(me.json().data.map((r: { user_id: string }) => r.user_id))
  t.same([...actors], [plain.id], 'only the caller\'s rows, whatever user_id says (SR-25)')
  t.ok(me.json().data.some((r: { log_id: string }) => r.log_id === mine.log_id))
  t.notOk(me.json().data.some((r: { log_id: string }) => r.log_id === theirs.log_id))
})
