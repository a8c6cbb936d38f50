import t from 'tap'
import { randomUUID } from 'node:crypto'
import { ActivityBuffer, type BufferOptions, type PendingRow } from '../../plugins/app/activity/buffer.ts'
import { timeOrderedId } from '../../plugins/app/activity/ids.ts'
import type { NewActivityLog } from '../../db/schema/index.ts'

/**
 * The batching writer on its own, with a fake database: what it writes, when,
 * what it keeps when the database fails, and what it may drop when full.
 */
const downError = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' })

function fakeDatabase () {
  const db = {
    rows: [] as NewActivityLog[],
    writes: 0,
    down: false,
    /** Rows whose insert fails with this SQLSTATE, as PostgreSQL would (one bad row fails its whole batch). */
    refuse: new Map<string, string>(),
    write: async (rows: NewActivityLog[]) => {
      db.writes++
      await Promise.resolve()
      if (db.down) throw downError()
      for (const row of rows) {
        const code = db.refuse.get(row.log_id!)
        if (code && !(code === '23503' && row.user_id === null)) throw Object.assign(new Error('insert failed'), { cause: Object.assign(new Error(`violation ${code}`), { code }) })
      }
      // Idempotent like ON CONFLICT DO NOTHING: a retried row is not written twice.
      for (const row of rows) if (!db.rows.some((r) => r.log_id === row.log_id)) db.rows.push(row)
    }
  }
  return db
}

const logs: Array<{ level: string, msg: string, obj: unknown }> = []
const log = {
  warn: (obj: unknown, msg?: string) => { logs.push({ level: 'warn', msg: msg ?? '', obj }) },
  error: (obj: unknown, msg?: string) => { logs.push({ level: 'error', msg: msg ?? '', obj }) },
  info: (obj: unknown, msg?: string) => { logs.push({ level: 'info', msg: msg ?? '', obj }) }
} as unknown as BufferOptions['log']

function setup (options: Partial<BufferOptions> = {}) {
  const db = fakeDatabase()
  const drops: Array<[number, string]> = []
  const buffer = new ActivityBuffer({
    write: db.write,
    capacity: 5,
    batchSize: 100,
    intervalMs: 60_000,
    onDrop: (count, reason) => drops.push([count, reason]),
    log,
    ...options
  })
  return { db, buffer, drops }
}

let n = 0
function pending (security: boolean, level: NewActivityLog['level'] = 'info', extra: Partial<NewActivityLog> = {}): PendingRow {
  return { row: { log_id: randomUUID(), level, action: `a${++n}`, module: 'test', ...extra }, security, taken: false }
}

t.test('add() resolves without touching the database; flush() writes everything in one batch', async (t) => {
  const { db, buffer } = setup({ capacity: 100 })
  for (let i = 0; i < 10; i++) await buffer.add(pending(i % 2 === 0))
  t.equal(db.writes, 0, 'nothing written on the request path')
  t.equal(buffer.pending, 10)
  await buffer.flush()
  t.equal(db.writes, 1, 'one batch')
  t.equal(db.rows.length, 10)
  t.equal(buffer.pending, 0)
})

t.test('a full batch is written without waiting for the interval', async (t) => {
  const { db, buffer } = setup({ capacity: 100, batchSize: 4 })
  for (let i = 0; i < 4; i++) await buffer.add(pending(true))
  await new Promise((resolve) => setImmediate(resolve))
  await buffer.flush()
  t.equal(db.rows.length, 4)
  t.equal(db.writes, 1, 'written by the batch trigger, and flush() found nothing left')
})

t.test('the interval timer writes waiting rows', async (t) => {
  const { db, buffer } = setup({ capacity: 100, intervalMs: 20 })
  buffer.start()
  t.teardown(() => buffer.close())
  await buffer.add(pending(false))
  for (let i = 0; i < 100 && db.rows.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 20))
  t.equal(db.rows.length, 1)
})

t.test('database down: rows are kept and written once when it is back (no duplicates)', async (t) => {
  const { db, buffer, drops } = setup({ capacity: 100, batchSize: 3 })
  db.down = true
  const rows = [pending(true), pending(false), pending(true), pending(false)]
  for (const p of rows) await buffer.add(p)
  await t.rejects(buffer.flush(), { code: 'ECONNREFUSED' })
  t.equal(buffer.pending, 4, 'every row is still queued')
  t.equal(db.rows.length, 0)
  db.down = false
  await buffer.flush()
  t.same(db.rows.map((r) => r.log_id), rows.map((p) => p.row.log_id), 'all written, in order, once')
  t.same(drops, [])
})

t.test('buffer full: the oldest info request rows go first, audit rows are never dropped', async (t) => {
  const { db, buffer, drops } = setup({ capacity: 5 })
  db.down = true
  const audit1 = pending(true)
  const info1 = pending(false, 'info')
  const warn1 = pending(false, 'warning')
  const info2 = pending(false, 'info')
  const audit2 = pending(true, 'warning')
  for (const p of [audit1, info1, warn1, info2, audit2]) await buffer.add(p)

  const info3 = pending(false, 'info')
  await buffer.add(info3)
  t.same(drops, [[1, 'buffer_full']], 'one row dropped and counted')
  const kept = () => buffer['rows'].map((p: PendingRow) => p.row.log_id)
  t.notOk(kept().includes(info1.row.log_id), 'the oldest info row')
  t.ok(kept().includes(info3.row.log_id))

  const audit3 = pending(true)
  await buffer.add(audit3)
  t.notOk(kept().includes(info2.row.log_id), 'an audit row pushes out the next info row')
  const audit4 = pending(true)
  await buffer.add(audit4)
  t.notOk(kept().includes(info3.row.log_id))
  const audit5 = pending(true)
  await buffer.add(audit5)
  t.notOk(kept().includes(warn1.row.log_id), 'then a non-audit row of any level')
  t.same(kept(), [audit1, audit2, audit3, audit4, audit5].map((p) => p.row.log_id), 'only audit rows are left')

  const info4 = pending(false)
  await buffer.add(info4)
  t.notOk(kept().includes(info4.row.log_id), 'a request row finding only audit rows is dropped itself')
  t.equal(buffer.dropped, 5)

  // An audit row finding only audit rows waits for a write; the database is down, so it fails (503), nothing is dropped.
  const audit6 = pending(true)
  await t.rejects(buffer.add(audit6), { code: 'SERVICE_UNAVAILABLE' })
  t.same(kept(), [audit1, audit2, audit3, audit4, audit5].map((p) => p.row.log_id), 'the audit rows are all still there')

  db.down = false
  await buffer.add(audit6)
  await buffer.flush()
  t.same(db.rows.map((r) => r.log_id), [audit1, audit2, audit3, audit4, audit5, audit6].map((p) => p.row.log_id), 'every audit row written')
})

t.test('one refused row does not block its batch: a deleted actor is unlinked, a malformed row is dropped and counted', async (t) => {
  const { db, buffer, drops } = setup({ capacity: 100 })
  const good = pending(true)
  const orphan = pending(true, 'info', { user_id: randomUUID() })
  const broken = pending(true)
  db.refuse.set(orphan.row.log_id, '23503')
  db.refuse.set(broken.row.log_id, '22P02')
  for (const p of [good, orphan, broken]) await buffer.add(p)
  await buffer.flush()
  t.same(db.rows.map((r) => r.log_id), [good.row.log_id, orphan.row.log_id])
  const written = db.rows.find((r) => r.log_id === orphan.row.log_id)!
  t.equal(written.user_id, null)
  t.equal((written.metadata as { deleted_actor_id?: string }).deleted_actor_id, orphan.row.user_id)
  t.same(drops, [[1, 'unwritable']])
  t.equal(buffer.pending, 0)
})

t.test('close() writes what waits; if the database is gone the rows go to the log, not nowhere', async (t) => {
  const ok = setup({ capacity: 100 })
  for (let i = 0; i < 3; i++) await ok.buffer.add(pending(true))
  await ok.buffer.close()
  t.equal(ok.db.rows.length, 3)

  const down = setup({ capacity: 100 })
  down.db.down = true
  const lost = pending(true)
  await down.buffer.add(lost)
  logs.length = 0
  await down.buffer.close(2)
  const line = logs.find((l) => l.level === 'error')
  t.ok(line, 'an error line')
  t.same((line!.obj as { rows: NewActivityLog[] }).rows.map((r) => r.log_id), [lost.row.log_id], 'carrying the row')
  t.same(down.drops, [[1, 'unwritable']])

  // A row arriving after the final flush (a response finishing during shutdown) is written on its own.
  const late = pending(false)
  await ok.buffer.add(late)
  t.ok(ok.db.rows.some((r) => r.log_id === late.row.log_id))
})

t.test('row ids: version-7 UUIDs, unique and in the order made, also within one millisecond and across pool refills', async (t) => {
  const uuidV7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/
  const millisOf = (id: string) => Number.parseInt(id.replace(/-/g, '').slice(0, 12), 16)
  const start = Date.UTC(2030, 0, 1)
  // 3,000 ids in one millisecond (the random pool holds 256 ids' worth), then the next ones.
  const ids = [
    ...Array.from({ length: 3000 }, () => timeOrderedId(start)),
    ...Array.from({ length: 3 }, () => timeOrderedId(start + 1))
  ]
  t.ok(ids.every((id) => uuidV7.test(id)), 'every id is a version-7 UUID (RFC 9562 variant)')
  t.equal(new Set(ids).size, ids.length, 'no id repeats')
  t.ok(ids.every((id, i) => i === 0 || ids[i - 1] < id), 'each id sorts after the one before it')
  t.equal(millisOf(ids[0]), start, 'carrying the time it was made')
  t.equal(millisOf(ids.at(-1)!), start + 1)
  // A clock that steps back (NTP): ids keep counting up from the last time seen.
  const after = timeOrderedId(start - 5000)
  t.ok(after > ids.at(-1)!, 'a clock stepping back does not make an id sort before earlier ones')
  t.equal(new Set(ids.map((id) => id.slice(-12))).size, ids.length, 'the random tails (48 bits) differ too')
})
