import t from 'tap'
import { randomUUID } from 'node:crypto'
import { eq, inArray } from 'drizzle-orm'
import { build, buildContext } from '../helpers/build.ts'
import { createUser, defaultPassword } from '../helpers/users.ts'
import { activityLog, user } from '../../db/schema/index.ts'
import { openTestDatabase } from '../helpers/database.ts'
import { insertActivityRows } from '../../plugins/app/activity/writer.ts'

/** The writer inside the app: rows survive a graceful stop, and what the buffer drops is counted. */
const api = '/api/v1'
// No timer flush in the middle of a test: rows are written when the test calls flush() or closes the app.
const quiet = { ACTIVITY_FLUSH_INTERVAL_MS: '60000', LOAD_SHED_EVENT_LOOP_DELAY_MS: '0' }

t.test('SR-42: closing the app writes the rows still waiting (graceful stop)', async (t) => {
  const ctx = await buildContext(t, quiet)
  const stopping = await ctx.another(quiet)
  const u = await createUser(ctx.app)
  const res = await stopping.inject({ method: 'POST', url: `${api}/auth/login-with-password`, payload: { identifier: u.email, password: defaultPassword }, headers: { 'x-request-id': 'graceful-stop-login' } })
  t.equal(res.statusCode, 200)
  t.equal(stopping.activity.stats().pending, 1, 'the audit row is still buffered')
  await stopping.close()
  const rows = await ctx.app.db.select().from(activityLog).where(eq(activityLog.request_id, 'graceful-stop-login'))
  t.same(rows.map((r) => r.action), ['login_success'], 'written by the close, before the database closed')
})

t.test('dropped rows are counted in the metrics; audit rows are not dropped', async (t) => {
  const app = await build(t, { ...quiet, METRICS_ENABLED: 'true', ACTIVITY_BUFFER_MAX: '10', ACTIVITY_BATCH_SIZE: '10' })
  // Fifteen client-level rows queued within one tick: the buffer holds ten.
  // (queued in one tick, so no batch write can run in between).
  await Promise.all([
    ...Array.from({ length: 15 }, (_v, i) => app.activity.record(null, { action: `burst_${i}`, module: 'test' }, { security: false })),
    ...Array.from({ length: 3 }, (_v, i) => app.audit(null, { action: `audit_${i}`, module: 'test' }))
  ])
  await app.activity.flush()
  const stats = app.activity.stats()
  t.equal(stats.dropped, 8, 'five over the limit, then three pushed out by audit rows')
  const metrics = await app.inject({ url: '/metrics' })
  t.match(metrics.body, /activity_log_rows_dropped_total\{reason="buffer_full"\} 8/)
  t.match(metrics.body, /activity_log_rows_pending 0/)
  const written = await app.db.select({ action: activityLog.action }).from(activityLog).where(eq(activityLog.module, 'test'))
  t.equal(written.filter((r) => r.action.startsWith('audit_')).length, 3, 'every audit row written')
  t.equal(written.length, 10)
})

t.test('a batch is written by one statement whatever its size: every column round-trips, a repeated batch is skipped', async (t) => {
  const { db } = await openTestDatabase(t)
  const [owner] = await db.insert(user).values({ email: 'writer-batch@example.com' }).returning()
  const full = {
    log_id: randomUUID(),
    user_id: owner.user_id,
    level: 'warning' as const,
    action: 'login_failed',
    module: 'auth',
    message: 'quotes \' " \\ and unicode: ünïcødé 漢字 🙂',
    ip_address: '203.0.113.7',
    user_agent: 'Mozilla/5.0 (X11; Linux x86_64) "quoted"',
    device: 'desktop',
    browser: 'Firefox 120',
    os: 'Linux',
    endpoint: '/api/v1/auth/login-with-password',
    method: 'POST',
    status_code: 401,
    request_id: 'req-1',
    session_id: randomUUID(),
    target_user_id: randomUUID(),
    duration_ms: 12,
    metadata: { error: 'AUTH_INVALID_CREDENTIALS', nested: { list: [1, 'two', null], flag: true } },
    created_at: new Date('2026-01-02T03:04:05.678Z')
  }
  const sparse = { log_id: randomUUID(), level: 'info' as const, action: 'request', module: 'root', created_at: new Date('2026-01-02T03:04:06.000Z') }
  const many = Array.from({ length: 450 }, (_, i) => ({ log_id: randomUUID(), level: 'debug' as const, action: 'bulk', module: 'test', created_at: new Date(Date.UTC(2026, 0, 3, 0, 0, i % 60)) }))

  await insertActivityRows(db, [full, sparse])
  await insertActivityRows(db, [])
  await insertActivityRows(db, many)
  const written = await db.select().from(activityLog).where(inArray(activityLog.log_id, [full.log_id, sparse.log_id]))
  const byId = Object.fromEntries(written.map((r) => [r.log_id, r]))
  t.same(byId[full.log_id], full, 'every column of a full row, as given')
  t.same(byId[sparse.log_id], { ...Object.fromEntries(Object.keys(full).map((k) => [k, null])), ...sparse }, 'absent columns are NULL')
  t.equal((await db.select().from(activityLog).where(eq(activityLog.action, 'bulk'))).length, 450, 'a batch of 450 rows')

  await insertActivityRows(db, [full, { ...sparse, log_id: randomUUID() }])
  t.equal((await db.select().from(activityLog).where(eq(activityLog.log_id, full.log_id))).length, 1, 'a row written again is skipped (log_id conflict), not doubled')
  t.equal((await db.select().from(activityLog).where(eq(activityLog.module, 'root'))).length, 2, 'the new row of that batch is written')
})
