import t from 'tap'
import { eq } from 'drizzle-orm'
import { build } from '../helpers/build.ts'
import { bearer, createUser, login } from '../helpers/users.ts'
import { activityLog, user } from '../../db/schema/index.ts'

/**
 * SR-38, SR-43: text PostgreSQL refuses (NUL, lone surrogates) must never cost an
 * audit row. Each input is either refused with a 400 or written, repaired, and read
 * back from the database; nothing is acknowledged and then lost.
 */
const api = '/api/v1'
// Rows are written when the test flushes (or, for client events, before the answer).
const env = { ACTIVITY_FLUSH_INTERVAL_MS: '60000', LOAD_SHED_EVENT_LOOP_DELAY_MS: '0', METRICS_ENABLED: 'true' }
const hostile = ['NUL \u0000 inside', 'lone high \ud800 surrogate', 'lone low \udc00 surrogate', 'both\u0000\udbff', 'a kept pair 🙂 and a literal \\u0000']
// eslint-disable-next-line no-control-regex -- NUL is exactly what is looked for
const repaired = (s: string) => s.replace(/\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd')

t.test('SR-38: an admin (de)activation whose reason holds NUL or a lone surrogate is refused or audited, never unaudited', async (t) => {
  const app = await build(t, env)
  const admin = await createUser(app, { groups: ['super_admin'] })
  const headers = bearer((await login(app, admin.email!)).access_token)
  for (const reason of hostile) {
    const target = await createUser(app)
    const res = await app.inject({ method: 'PUT', url: `${api}/users/${target.user_id}/status`, headers, payload: { is_active: false, reason } })
    const [after] = await app.db.select({ active: user.is_active }).from(user).where(eq(user.user_id, target.user_id))
    if (res.statusCode === 400) {
      t.equal(after.active, true, `${JSON.stringify(reason)}: refused with 400, and nothing changed`)
      continue
    }
    t.equal(res.statusCode, 200, `${JSON.stringify(reason)}: accepted`)
    t.equal(after.active, false)
    await app.activity.flush()
    const rows = await app.db.select().from(activityLog).where(eq(activityLog.target_user_id, target.user_id))
    const audit = rows.filter((r) => r.action === 'user_deactivate')
    t.equal(audit.length, 1, `${JSON.stringify(reason)}: the deactivation is audited`)
    t.equal(audit[0]?.metadata?.reason, repaired(reason), 'with the reason, NUL and lone surrogates replaced by U+FFFD')
  }
  t.equal(app.activity.stats().dropped, 0, 'no row dropped')
})

t.test('SR-38, SR-43: client events with NUL or lone surrogates are refused with 400 or written before the 201', async (t) => {
  const app = await build(t, env)
  const u = await createUser(app)
  const headers = bearer((await login(app, u.email!)).access_token)
  for (const text of hostile) {
    for (const payload of [{ action: 'page_view', message: text }, { action: 'page_view', metadata: { note: text, [`key ${text}`]: [text, { deep: text }] } }]) {
      const res = await app.inject({ method: 'POST', url: `${api}/activity`, headers, payload })
      if (res.statusCode === 400) {
        t.pass(`${JSON.stringify(payload)}: refused with 400`)
        continue
      }
      t.equal(res.statusCode, 201, `${JSON.stringify(payload)}: acknowledged`)
      // No flush: a 201 means the row is already in the database.
      const [row] = await app.db.select().from(activityLog).where(eq(activityLog.log_id, res.json().data.log_id))
      t.ok(row, 'the acknowledged row is in the database')
      if ('message' in payload) t.equal(row?.message, repaired(text))
      else t.same(row?.metadata, { note: repaired(text), [`key ${repaired(text)}`]: [repaired(text), { deep: repaired(text) }] })
    }
  }
  t.equal(app.activity.stats().dropped, 0, 'no row dropped')
})

t.test('SR-38: the writer repairs what no schema checks (server-side rows, metadata keys), and one bad row does not take its batch', async (t) => {
  const app = await build(t, env)
  let deep: unknown = 'bottom'
  for (let i = 0; i < 200_000; i++) deep = [deep]
  const before = app.activity.stats().written
  await Promise.all([
    app.audit(null, { action: 'first', module: 'durability', message: 'plain' }),
    app.audit(null, { action: 'nul\u0000action', module: 'durability', message: 'agent \ud800', metadata: { 'k\u0000': 'v\udfff', list: ['\u0000'] } }),
    // JSON.stringify cannot serialize this: its batch is split and the row written without its metadata.
    app.audit(null, { action: 'too_deep', module: 'durability', metadata: { deep } }),
    app.audit(null, { action: 'last', module: 'durability', statusCode: 2 ** 40 })
  ])
  await app.activity.flush()
  const rows = await app.db.select().from(activityLog).where(eq(activityLog.module, 'durability'))
  const byAction = Object.fromEntries(rows.map((r) => [r.action, r]))
  t.same(Object.keys(byAction).sort(), ['first', 'last', 'nul\ufffdaction', 'too_deep'], 'every row written')
  t.equal(byAction['nul\ufffdaction']?.message, 'agent \ufffd')
  t.same(byAction['nul\ufffdaction']?.metadata, { 'k\ufffd': 'v\ufffd', list: ['\ufffd'] })
  t.same(byAction.too_deep?.metadata, { metadata_unwritable: 'UnserializableRowsError' }, 'the unwritable metadata is replaced by a note')
  t.equal(byAction.last?.status_code, null, 'an out-of-range status is nulled, the row kept')
  t.equal(app.activity.stats().written - before, 4)
  t.equal(app.activity.stats().dropped, 0)
  const metrics = await app.inject('/metrics')
  t.notMatch(metrics.body, /activity_log_rows_dropped_total\{reason="unwritable"\} [1-9]/, 'the drop counter did not move')
})
