/**
 * `npm run bench:partitions [-- conversion|scale]`: activity_log partitioning at
 * size (docs/activity-log.md). Each part works in a scratch database on
 * TEST_DATABASE_URL's server (named like the test databases, so a crashed run is
 * cleaned up with them), dropped at the end.
 *
 * conversion: an unpartitioned activity_log (migrations 0000-0001) with
 * BENCH_CONVERSION_ROWS rows (default 5,000,000), then migrateDatabase() (the
 * preparation outside the transaction, then migration 0002). A second connection
 * samples pg_locks every 10 ms and a third inserts a row every 10 ms: the report
 * is the duration, the longest span a write-blocking lock was seen on an
 * activity_log relation, and the slowest concurrent insert.
 *
 * scale: a partitioned activity_log with monthly partitions over a year, loaded
 * in SQL newest first at one rate (BENCH_SCALE_ROWS, default 20,000,000, over 365
 * days): the first page, a filtered page, a user's own page and a 7-day statistic
 * are timed (median of 15) when 1,000,000 rows are loaded and again at the full
 * size, then one month's partition is dropped (retention) and timed.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import path from 'node:path'
import Fastify from 'fastify'
import fp from 'fastify-plugin'
import postgres from 'postgres'
import { drizzle } from 'drizzle-orm/postgres-js'
import { migrate } from 'drizzle-orm/postgres-js/migrator'
import { openDatabase, type DatabaseHandle } from '../db/client.ts'
import { migrateDatabase, resolveMigrationsFolder } from '../db/migrate.ts'
import queriesPlugin from '../plugins/app/activity/queries.ts'
import { dropPartitionsBefore, listPartitions, maintainPartitions, withMaintenanceLock } from '../plugins/app/activity/partitions.ts'

const serverUrl = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
const DAY = 86_400_000
const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`

async function scratchDatabase () {
  const name = `t_${Math.floor(Date.now() / 1000).toString(36)}_${randomBytes(5).toString('hex')}`
  const url = new URL(serverUrl)
  url.pathname = `/${name}`
  const admin = postgres(serverUrl, { max: 1, onnotice: () => {} })
  await admin.unsafe(`create database "${name}" template template0`)
  return {
    url: url.toString(),
    drop: async () => {
      await admin.unsafe(`drop database if exists "${name}" with (force)`)
      await admin.end()
    }
  }
}

/** A random-looking UUIDv7 for row i at time `ts` (SQL expressions), as the writer makes them. */
const v7 = (ts: string, i: string) => `(lpad(to_hex((extract(epoch from ${ts}) * 1000)::bigint), 12, '0') || '7' || substr(md5(${i}::text), 1, 3) || '8' || substr(md5(${i}::text), 4, 15))::uuid`

/** Rows i = first..last, spaced `step` apart going back from `newest`. */
function generateRows (first: number, last: number, newest: Date, stepMs: number) {
  const ts = `(timestamptz '${newest.toISOString()}' - i * interval '${stepMs} milliseconds')`
  return `insert into activity_log (log_id, user_id, level, action, module, ip_address, endpoint, method, status_code, duration_ms, created_at)
    select ${v7(ts, 'i')},
      case when i % 10 = 0 then (select array_agg(user_id order by user_id) from "user" where email like 'bench%')[1 + (i / 10) % 100] end,
      (array['info', 'info', 'info', 'warning', 'error'])[1 + i % 5],
      (array['request', 'login', 'logout', 'refresh', 'profile_update', 'otp_sent', 'password_change', 'upload'])[1 + i % 8],
      (array['auth', 'users', 'media', 'activity', 'rbac', 'sessions'])[1 + i % 6],
      '203.0.113.' || (i % 250), '/api/v1/auth/login', 'POST', 200, i % 200, ${ts}
    from generate_series(${first}, ${last}) as i`
}

async function conversion (): Promise<void> {
  const rows = Number(process.env.BENCH_CONVERSION_ROWS ?? 5_000_000)
  const database = await scratchDatabase()
  const sql = postgres(database.url, { max: 1, onnotice: () => {} })
  const watcher = postgres(database.url, { max: 1, onnotice: () => {} })
  const writer = postgres(database.url, { max: 1, onnotice: () => {} })
  const before = mkdtempSync(path.join(tmpdir(), 'migrations-before-'))
  let handle: DatabaseHandle | undefined
  try {
    // The migrations before 0002 only.
    cpSync(resolveMigrationsFolder(), before, { recursive: true })
    const journalFile = path.join(before, 'meta', '_journal.json')
    const journal = JSON.parse(readFileSync(journalFile, 'utf8')) as { entries: Array<{ tag: string }> }
    journal.entries = journal.entries.filter((e) => e.tag < '0002')
    writeFileSync(journalFile, JSON.stringify(journal))
    await migrate(drizzle({ client: sql }), { migrationsFolder: before })
    await sql.unsafe('insert into "user" (email) select \'bench\' || i || \'@example.com\' from generate_series(1, 100) i')
    let started = performance.now()
    await sql.unsafe('set synchronous_commit = off')
    for (let first = 1; first <= rows; first += 1_000_000) {
      await sql.unsafe(generateRows(first, Math.min(rows, first + 999_999), new Date(), 60_000 * 525_600 / rows))
    }
    await sql.unsafe('analyze activity_log')
    console.log(`conversion: ${rows.toLocaleString('en')} rows in an unpartitioned activity_log, loaded in ${seconds(performance.now() - started)}`)

    const blocking = new Set(['ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock'])
    const spans = new Map<string, { first: number, last: number }>()
    let longest = { what: 'none', ms: 0 }
    const state = { watching: true }
    const watch = (async () => {
      while (state.watching) {
        const now = performance.now()
        const locks = await watcher<Array<{ rel: string, mode: string }>>`
          select coalesce(c.relname, l.relation::text) as rel, l.mode from pg_locks l left join pg_class c on c.oid = l.relation
          where l.locktype = 'relation' and l.granted and l.pid <> pg_backend_pid()
            and l.database = (select oid from pg_database where datname = current_database())
            and (c.relname is null or c.relname like 'activity_log%')`
        const seen = new Set<string>()
        for (const lock of locks.filter((l) => blocking.has(l.mode))) {
          const key = `${lock.mode} on ${lock.rel}`
          seen.add(key)
          const span = spans.get(key) ?? { first: now, last: now }
          span.last = now
          spans.set(key, span)
          if (span.last - span.first > longest.ms) longest = { what: key, ms: span.last - span.first }
        }
        for (const key of spans.keys()) if (!seen.has(key)) spans.delete(key)
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
    })()
    let slowestInsert = 0
    let inserts = 0
    const write = (async () => {
      while (state.watching) {
        const at = performance.now()
        await writer`insert into activity_log (level, action, module) values ('info', 'during_conversion', 'bench')`
        slowestInsert = Math.max(slowestInsert, performance.now() - at)
        inserts++
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
    })()

    handle = await openDatabase({ url: database.url, dataDir: '', poolMax: 1 })
    started = performance.now()
    await migrateDatabase(handle, { log: () => {} })
    const took = performance.now() - started
    state.watching = false
    await Promise.all([watch, write])
    const [{ kind, n }] = await sql<Array<{ kind: string, n: number }>>`select (select relkind::text from pg_class where oid = 'activity_log'::regclass) as kind, count(*)::int as n from activity_log`
    console.log(`conversion: ${seconds(took)} in all (preparation and migration 0002); activity_log is now ${kind === 'p' ? 'partitioned' : kind}, ${n.toLocaleString('en')} rows`)
    console.log(`conversion: longest write-blocking lock seen (10 ms sampling): ${longest.what}, ${longest.ms.toFixed(0)} ms`)
    console.log(`conversion: ${inserts} concurrent inserts, slowest ${slowestInsert.toFixed(0)} ms`)
  } finally {
    await handle?.close()
    await Promise.all([sql.end(), watcher.end(), writer.end()])
    rmSync(before, { recursive: true, force: true })
    await database.drop()
  }
}

function median (values: number[]): number {
  const sorted = values.slice().sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]
}

async function scale (): Promise<void> {
  const total = Number(process.env.BENCH_SCALE_ROWS ?? 20_000_000)
  const days = 365
  const database = await scratchDatabase()
  const sql = postgres(database.url, { max: 1, onnotice: () => {} })
  const handle = await openDatabase({ url: database.url, dataDir: '', poolMax: 2 })
  const app = Fastify()
  try {
    await migrateDatabase(handle, { log: () => {} })
    await sql.unsafe('insert into "user" (email) select \'bench\' || i || \'@example.com\' from generate_series(1, 100) i')
    // Monthly partitions over the year: the (empty) partition of the conversion goes,
    // and the maintenance walks a clock from a year ago to now as its schedule would.
    await withMaintenanceLock(handle.db, true, async (tx) => await dropPartitionsBefore(tx, new Date(Date.now() + 62 * DAY)))
    const now = new Date()
    for (let at = now.getTime() - (days + 31) * DAY; ; at = Math.min(now.getTime(), at + 28 * DAY)) {
      await maintainPartitions(handle.db, { interval: 'month', retentionDays: 0, now: new Date(at) })
      if (at === now.getTime()) break
    }
    const partitions = await listPartitions(handle.db)
    console.log(`scale: ${partitions.length} partitions (${partitions[0].name} .. ${partitions.at(-2)?.name}, default)`)

    await app.register(fp(async (f) => { f.decorate('db', handle.db) }, { name: 'db' }))
    app.decorate('now', () => now.getTime())
    await app.register(queriesPlugin)
    await app.ready()
    const [me] = await sql<Array<{ id: string }>>`select user_id as id from "user" where email = 'bench1@example.com'`
    const q = app.activityQueries
    const cases: Array<[string, () => Promise<unknown>]> = [
      ['first page (50)', async () => await q.list({}, { limit: 50 })],
      ['filtered page (module=auth, level=error, last 30 days)', async () => await q.list({ module: 'auth', level: 'error', from: new Date(now.getTime() - 30 * DAY) }, { limit: 50 })],
      ['activity/me (a user with 1/1000 of the rows)', async () => await q.list({ userId: me.id }, { limit: 50 })],
      ['statistics, 7 days', async () => await q.statistics({ from: new Date(now.getTime() - 7 * DAY), to: now }, 'UTC')]
    ]
    const timings = new Map<string, number[]>()
    const measure = async (label: string) => {
      await sql.unsafe('analyze activity_log')
      for (const [name, run] of cases) {
        await run()
        const ms: number[] = []
        for (let i = 0; i < 15; i++) {
          const at = performance.now()
          await run()
          ms.push(performance.now() - at)
        }
        timings.set(name, [...(timings.get(name) ?? []), median(ms)])
        console.log(`scale: ${label}: ${name}: median ${median(ms).toFixed(2)} ms`)
      }
    }

    const step = days * DAY / total
    await sql.unsafe('set synchronous_commit = off')
    let started = performance.now()
    const first = Math.min(total, 1_000_000)
    await sql.unsafe(generateRows(1, first, now, step))
    let loadMs = performance.now() - started
    await measure(`${first.toLocaleString('en')} rows`)
    started = performance.now()
    for (let from = first + 1; from <= total; from += 1_000_000) {
      await sql.unsafe(generateRows(from, Math.min(total, from + 999_999), now, step))
    }
    loadMs += performance.now() - started
    console.log(`scale: loaded ${total.toLocaleString('en')} rows over ${days} days in ${seconds(loadMs)} (generate_series, synchronous_commit off)`)
    await measure(`${total.toLocaleString('en')} rows`)
    for (const [name, [small, large]] of timings) console.log(`scale: ${name}: ${(large / small).toFixed(2)}x`)

    const oldest = (await listPartitions(handle.db)).find((p) => !p.isDefault && p.to !== null && p.from !== null)!
    const [{ n }] = await sql<Array<{ n: number }>>`select count(*)::int as n from ${sql(oldest.name)}`
    started = performance.now()
    await withMaintenanceLock(handle.db, true, async (tx) => await dropPartitionsBefore(tx, oldest.to!))
    console.log(`scale: retention: dropped ${oldest.name} (${n.toLocaleString('en')} rows) in ${(performance.now() - started).toFixed(1)} ms`)
  } finally {
    await app.close()
    await handle.close()
    await sql.end()
    await database.drop()
  }
}

const part = process.argv[2]
if (part && part !== 'conversion' && part !== 'scale') throw new Error('usage: bench:partitions [conversion|scale]')
if (!part || part === 'conversion') await conversion()
if (!part || part === 'scale') await scale()
