import t from 'tap'
import { eq } from 'drizzle-orm'
import { build, buildContext } from '../helpers/build.ts'
import { createUser, defaultPassword } from '../helpers/users.ts'
import { activityLog } from '../../db/schema/index.ts'

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
