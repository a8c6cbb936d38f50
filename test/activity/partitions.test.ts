import t from 'tap'
import { fillPlaceholders, sql, type SQL } from 'drizzle-orm'
import postgres from 'postgres'
import type { FastifyInstance } from 'fastify'
import { buildContext, stack } from '../helpers/build.ts'
import { bearer, createUser, login } from '../helpers/users.ts'
import { executeRows } from '../../db/client.ts'
import { loadConfig } from '../../config.ts'
import { fetchSize, listSelect, listWindowStarts, statisticsSql, type Filter } from '../../plugins/app/activity/queries.ts'
import { isPartitioned, listPartitions, maintainPartitions, MAINTENANCE_LOCK_KEY, nextBoundary, partitionName } from '../../plugins/app/activity/partitions.ts'

const api = '/api/v1'
const DAY = 86_400_000
const NOW = Date.parse('2031-06-15T12:00:00Z')
const env = { ACTIVITY_FLUSH_INTERVAL_MS: '60000' }
const month = (iso: string) => partitionName(new Date(iso))

/** Every table an EXPLAIN (FORMAT JSON) plan reads. */
function relations (plan: unknown, found = new Set<string>()): Set<string> {
  if (Array.isArray(plan)) plan.forEach((p) => relations(p, found))
  else if (plan && typeof plan === 'object') {
    for (const [key, value] of Object.entries(plan)) {
      if (key === 'Relation Name' && typeof value === 'string') found.add(value)
      else relations(value, found)
    }
  }
  return found
}

async function explain (app: FastifyInstance, query: SQL): Promise<string[]> {
  const [row] = await executeRows<Record<string, unknown>>(app.db, sql`explain (format json) ${query}`)
  const plan = Object.values(row)[0]
  return [...relations(typeof plan === 'string' ? JSON.parse(plan) : plan)].sort()
}

/** The list query exactly as the plugin prepares it, with these values bound as literals. */
function listQuery (app: FastifyInstance, names: Filter[], values: Record<string, string | number>, withCursor: boolean, withWindow: boolean): SQL {
  const { sql: text, params } = listSelect(app.db, names, withCursor, withWindow, 51).toSQL()
  const bound = fillPlaceholders(params, values)
  return sql.raw(text.replace(/\$(\d+)/g, (_, n: string) => `'${String(bound[Number(n) - 1]).replaceAll("'", "''")}'`))
}

/**
 * An app whose clock walked from a year before NOW to NOW a month at a time, the
 * maintenance running at each step as its schedule would: monthly partitions from
 * June 2030 to September 2031 (three ahead), rows every 4 hours of that year.
 */
async function partitionedApp (t: Parameters<typeof buildContext>[0], extraEnv: Record<string, string> = {}) {
  const clock = { at: NOW - 365 * DAY }
  const context = await buildContext(t, { ...env, ...extraEnv }, { now: () => clock.at })
  const { app } = context
  while (clock.at < NOW) {
    clock.at = Math.min(NOW, clock.at + 30 * DAY)
    await app.activityPartitions.maintain()
  }
  const user = await createUser(app, { groups: ['user'] })
  await app.db.execute(sql`
    insert into activity_log (log_id, level, action, module, user_id, created_at)
    select gen_random_uuid(), (array['info', 'warning', 'error'])[1 + i % 3], 'seeded', 'm' || (i % 4),
      case when i % 5 = 0 then ${user.user_id}::uuid end, ${new Date(NOW).toISOString()}::timestamptz - i * interval '4 hours'
    from generate_series(1, 6 * 360) i`)
  return { ...context, clock, user }
}

t.test('migration 0002 makes activity_log partitioned; the start creates partitions ahead; a row no range covers lands in the DEFAULT partition', async (t) => {
  const { app } = await buildContext(t, env, { now: () => NOW })
  t.ok(await isPartitioned(app.db), `partitioned on ${stack}`)
  const partitions = await listPartitions(app.db)
  const names = partitions.map((p) => p.name)
  t.ok(names.includes('activity_log_legacy'), 'the table before the conversion is the oldest partition')
  t.equal(partitions.find((p) => p.name === 'activity_log_legacy')?.from, null, 'from MINVALUE')
  t.ok(partitions.at(-1)?.isDefault, 'and a DEFAULT partition')
  for (const start of ['2031-06-01', '2031-07-01', '2031-08-01', '2031-09-01']) t.ok(names.includes(month(start)), `${start}: the current month and three ahead`)
  t.notOk(names.includes(month('2031-10-01')))

  await app.db.execute(sql`insert into activity_log (level, action, module, created_at) values ('info', 'far', 'm', '2040-01-01T00:00:00Z')`)
  const [row] = await executeRows<{ part: string }>(app.db, sql`select tableoid::regclass::text as part from activity_log where action = 'far'`)
  t.equal(row.part, 'activity_log_default')
  t.same(await app.activityPartitions.maintain(), { created: [], dropped: [] }, 'a second round has nothing to do')
})

t.test('a partition created over rows the DEFAULT partition holds takes them over', async (t) => {
  const { app } = await buildContext(t, env, { now: () => NOW })
  await app.db.execute(sql`insert into activity_log (level, action, module, created_at) values ('info', 'early', 'm', '2031-10-20T00:00:00Z')`)
  const result = await maintainPartitions(app.db, { interval: 'month', retentionDays: 0, now: new Date('2031-07-15T00:00:00Z') })
  t.same(result?.created, [month('2031-10-01')])
  const [row] = await executeRows<{ part: string }>(app.db, sql`select tableoid::regclass::text as part from activity_log where action = 'early'`)
  t.equal(row.part, month('2031-10-01'))
})

t.test('week and day partitions follow their calendar (UTC, ISO weeks from Monday)', async (t) => {
  t.equal(nextBoundary(new Date('2031-06-15T12:00:00Z'), 'week').toISOString(), '2031-06-16T00:00:00.000Z', 'a Sunday: next Monday')
  t.equal(nextBoundary(new Date('2031-06-16T00:00:00Z'), 'week').toISOString(), '2031-06-23T00:00:00.000Z', 'a Monday at midnight: the one after')
  t.equal(nextBoundary(new Date('2031-12-31T23:59:59Z'), 'month').toISOString(), '2032-01-01T00:00:00.000Z')
  t.equal(nextBoundary(new Date('2031-06-15T12:00:00Z'), 'day').toISOString(), '2031-06-16T00:00:00.000Z')
  const { app } = await buildContext(t, { ...env, ACTIVITY_PARTITION_INTERVAL: 'day' }, { now: () => NOW })
  const names = (await listPartitions(app.db)).map((p) => p.name)
  t.same(['20310615', '20310616', '20310617', '20310618'].map((d) => names.includes(`activity_log_p${d}`)), [true, true, true, true], 'today and three days ahead')
})

t.test('pages and statistics read only the partitions their time bounds allow (EXPLAIN), and pages stay exact', async (t) => {
  const { app, user } = await partitionedApp(t)
  const all = (await listPartitions(app.db)).map((p) => p.name)
  t.ok(all.length >= 14, `${all.length} partitions`)
  const since = new Date(NOW - DAY).toISOString()
  const newest = [month('2031-06-01'), month('2031-07-01'), month('2031-08-01'), month('2031-09-01'), 'activity_log_default'].sort()

  t.same(await explain(app, listQuery(app, [], { limit: 51, since }, false, true)), newest, 'the first page: the current partition, the ones ahead and DEFAULT')
  t.same(await explain(app, listQuery(app, [], { limit: 51 }, false, false)), all.slice().sort(), 'without the window every partition would be read')
  t.same(await explain(app, listQuery(app, ['module', 'level'], { module: 'm1', level: 'info', limit: 51, since }, false, true)), newest, 'a filtered page')
  t.same(await explain(app, listQuery(app, ['userId'], { userId: user.user_id, limit: 51, since }, false, true)), newest, "a user's own page")
  t.same(await explain(app, listQuery(app, ['userId', 'module'], { userId: user.user_id, module: 'm1', limit: 51, since: new Date(NOW - 31 * DAY).toISOString() }, false, true)),
    [month('2031-05-01'), ...newest].sort(), 'a sparse filter\'s second read, the month: that month\'s partitions, not all')
  const cursorAt = '2031-03-10T10:00:00.000000Z'
  t.same(await explain(app, listQuery(app, [], { limit: 51, cursor_at: cursorAt, cursor_id: '00000000-0000-0000-0000-000000000000', since: new Date(Date.parse(cursorAt) - DAY).toISOString() }, true, true)),
    [month('2031-03-01')], 'a next page: its cursor bounds it from above too')
  t.same(await explain(app, listQuery(app, ['from', 'to'], { from: '2031-02-01T00:00:00Z', to: '2031-02-20T00:00:00Z', limit: 51, since: '2031-02-19T00:00:00Z' }, false, true)),
    [month('2031-02-01')], 'a page of a time range')
  t.same(await explain(app, statisticsSql({ from: new Date(NOW - 7 * DAY), to: new Date(NOW) }, 'UTC')), [month('2031-06-01')], 'a 7-day statistic')

  // The window then the fallback give exactly the pages a plain keyset query gives.
  const admin = await createUser(app, { groups: ['admin'] })
  const headers = bearer((await login(app, admin.email!)).access_token)
  await app.activity.flush()
  // Rows every 4 hours: the day never fills a page; with 20 a page, the month does for m1 and the user.
  for (const [query, limit] of [['module=m1', 100], [`user_id=${user.user_id}`, 100], ['level=error&from=2031-01-01T00:00:00Z', 100], ['module=m1', 20], [`user_id=${user.user_id}`, 20]] as const) {
    const params = new URLSearchParams(query)
    const expected = await executeRows<{ log_id: string }>(app.db, sql`select log_id from activity_log where action = 'seeded'
      and (${params.get('module')}::text is null or module = ${params.get('module')})
      and (${params.get('user_id')}::uuid is null or user_id = ${params.get('user_id')}::uuid)
      and (${params.get('level')}::text is null or level = ${params.get('level')})
      and (${params.get('from')}::timestamptz is null or created_at >= ${params.get('from')}::timestamptz)
      order by created_at desc, log_id desc`)
    const seen: string[] = []
    let cursor: string | undefined
    for (let pages = 0; pages < 100; pages++) {
      const res = await app.inject({ url: `${api}/activity?${query}&limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`, headers })
      t.equal(res.statusCode, 200)
      const body = res.json()
      seen.push(...body.data.filter((e: { action: string }) => e.action === 'seeded').map((e: { log_id: string }) => e.log_id))
      cursor = body.meta.pagination.next_cursor ?? undefined
      if (!cursor) break
    }
    t.same(seen, expected.map((r) => r.log_id), `${query}, ${limit} a page: every row once, in order (${expected.length})`)
  }
})

t.test('a page reads the day before its position, then the month, and only then without a lower bound', async (t) => {
  const iso = (at: number) => new Date(at).toISOString()
  t.same(listWindowStarts({}, undefined, NOW), [iso(NOW - DAY), iso(NOW - 31 * DAY)], 'a first page')
  const cursorAt = '2031-03-10T10:00:00.000000Z'
  t.same(listWindowStarts({}, cursorAt, NOW), [iso(Date.parse(cursorAt) - DAY), iso(Date.parse(cursorAt) - 31 * DAY)], 'a next page: from its cursor')
  t.same(listWindowStarts({ to: new Date(NOW - 100 * DAY) }, undefined, NOW), [iso(NOW - 101 * DAY), iso(NOW - 131 * DAY)], 'from `to` when it is earlier')
  t.same(listWindowStarts({ from: new Date(NOW - 10 * DAY) }, undefined, NOW), [iso(NOW - DAY)], '`from` within the month: the day, then the range itself')
  t.same(listWindowStarts({ from: new Date(NOW - DAY / 2) }, undefined, NOW), [], '`from` within the day: the range itself')
})

t.test('list statements carry a literal LIMIT: with a parameter there PostgreSQL prices the generic plan as a tenth of the table and plans every execution anew', async (t) => {
  const { app } = await buildContext(t)
  t.same([1, 10, 11, 20, 21, 50, 51, 100].map(fetchSize), [11, 11, 21, 21, 51, 51, 101, 101], 'the page size plus one, rounded up to a few sizes')
  for (const rows of [11, 21, 51, 101]) {
    const query = listSelect(app.db, ['module', 'level'], true, true, rows).toSQL()
    t.match(query.sql, new RegExp(` limit ${rows}$`), `LIMIT ${rows} in the text`)
    t.same(query.params.map((p) => (p as { name?: string }).name).sort(), ['cursor_at', 'cursor_at', 'cursor_id', 'level', 'module', 'since'], 'no parameter for it')
  }
})

t.test('cleanup drops the partitions wholly past the cutoff and deletes rows only in the partial one', async (t) => {
  const { app } = await partitionedApp(t)
  const admin = await createUser(app, { groups: ['admin'] })
  const headers = bearer((await login(app, admin.email!)).access_token)
  const cutoff = new Date(NOW - 200 * DAY)
  const [{ n: before }] = await executeRows<{ n: number }>(app.db, sql`select count(*)::int as n from activity_log where created_at < ${cutoff.toISOString()}::timestamptz`)
  const [{ n: kept }] = await executeRows<{ n: number }>(app.db, sql`select count(*)::int as n from activity_log where created_at >= ${cutoff.toISOString()}::timestamptz`)
  const res = await app.inject({ method: 'DELETE', url: `${api}/activity/cleanup?days=200`, headers })
  t.equal(res.statusCode, 200)
  t.same(res.json().data, { deleted: before, cutoff: cutoff.toISOString(), days: 200 }, 'the answer counts the dropped partitions\' rows too')
  const names = (await listPartitions(app.db)).map((p) => p.name)
  for (const gone of ['activity_log_legacy', month('2030-06-01'), month('2030-10-01')]) t.notOk(names.includes(gone), `${gone} dropped`)
  t.ok(names.includes(month('2030-11-01')), 'the partition holding the cutoff stays')
  const [{ n: left, oldest }] = await executeRows<{ n: number, oldest: string | Date }>(app.db, sql`select count(*)::int as n, min(created_at) as oldest from activity_log where created_at < ${new Date(NOW - DAY).toISOString()}::timestamptz`)
  t.ok(new Date(oldest) >= cutoff, 'no row older than the cutoff')
  t.ok(left > 0 && left <= kept, 'younger rows kept')
})

t.test('SR-38: the maintenance drops partitions past ACTIVITY_RETENTION_DAYS only when set, and runs on one instance at a time', async (t) => {
  t.throws(() => loadConfig({ NODE_ENV: 'test', ACTIVITY_RETENTION_DAYS: '10' }), /ACTIVITY_RETENTION_DAYS/, 'below ACTIVITY_MIN_RETENTION_DAYS is refused')
  t.equal(loadConfig({ NODE_ENV: 'test' }).ACTIVITY_RETENTION_DAYS, 0, 'the default keeps everything')
  const { app, clock, another, env: baseEnv } = await partitionedApp(t)
  t.same((await app.activityPartitions.maintain())?.dropped, [], 'retention 0: nothing dropped')

  const kept = await another({ ACTIVITY_RETENTION_DAYS: '100' }, { now: () => clock.at })
  const names = (await listPartitions(app.db)).map((p) => p.name)
  for (const gone of ['activity_log_legacy', month('2030-06-01'), month('2031-02-01')]) t.notOk(names.includes(gone), `${gone}: wholly older than 100 days, dropped at start`)
  t.ok(names.includes(month('2031-03-01')), 'the partition holding the cutoff stays')
  t.ok(kept)

  if (stack === 'postgres') {
    const other = postgres(baseEnv.DATABASE_URL, { max: 1, onnotice: () => {} })
    t.teardown(() => other.end({ timeout: 5 }))
    await other.begin(async (tx) => {
      await tx`select pg_advisory_xact_lock(${MAINTENANCE_LOCK_KEY}::bigint)`
      t.equal(await app.activityPartitions.maintain(), undefined, 'another instance holds the lock: this one skips the round')
    })
    t.ok(await app.activityPartitions.maintain(), 'and runs once it is free')
  }
})
