/**
 * `npm run bench:partitions [-- conversion|scale]`: activity_log partitioning at
 * size (docs/activity-log.md). Each part works in a scratch database on
 * TEST_DATABASE_URL's server (named like the test databases, so a crashed run is
 * cleaned up with them), dropped at the end.
 *
 * conversion: an unpartitioned activity_log (migrations 0000-0001) filled in SQL
 * with BENCH_CONVERSION_ROWS rows (default 5,000,000; the secondary indexes are
 * dropped for the load and built again, so the table ends as 0001 left it), then
 * the conversion as the server's start runs it: the preparation
 * (prepareActivityPartitioning: CHECK NOT VALID, VALIDATE, CREATE INDEX
 * CONCURRENTLY) and migrateDatabase() (migration 0002 onwards, one transaction),
 * each timed. Meanwhile a second connection samples pg_locks every 10 ms, a third
 * inserts a row every 10 ms and a fourth reads the first page every 10 ms: the
 * report is the durations, the longest span a write-blocking lock was seen on an
 * activity_log relation, and the slowest concurrent insert and read.
 *
 * scale: bench/lib/activity-scale.ts.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import postgres from 'postgres'
import { drizzle } from 'drizzle-orm/postgres-js'
import { migrate } from 'drizzle-orm/postgres-js/migrator'
import { openDatabase, type DatabaseHandle } from '../db/client.ts'
import { migrateDatabase, prepareActivityPartitioning, resolveMigrationsFolder } from '../db/migrate.ts'
import { loadRows, niceBackend, scratchDatabase, seconds } from './lib/activity-data.ts'
import { scale } from './lib/activity-scale.ts'

async function conversion (): Promise<void> {
  const rows = Number(process.env.BENCH_CONVERSION_ROWS ?? 5_000_000)
  const database = await scratchDatabase()
  const sql = postgres(database.url, { max: 1, onnotice: () => {} })
  const watcher = postgres(database.url, { max: 1, onnotice: () => {} })
  const writer = postgres(database.url, { max: 1, onnotice: () => {} })
  const reader = postgres(database.url, { max: 1, onnotice: () => {} })
  const preparer = postgres(database.url, { max: 1, onnotice: () => {} })
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
    await sql.unsafe('set synchronous_commit = off')
    await sql.unsafe('set maintenance_work_mem = \'256MB\'')
    await sql.unsafe('set max_parallel_maintenance_workers = 0')
    await niceBackend(sql)
    // A year of rows up to now; the conversion's boundary is the start of next month.
    const loadMs = await loadRows(sql, { first: 1, last: rows, newest: new Date(), stepMs: 365 * 86_400_000 / rows }, { bulk: true })
    await sql.unsafe('analyze activity_log')
    const [{ bytes }] = await sql<Array<{ bytes: number }>>`select pg_total_relation_size('activity_log')::bigint as bytes`
    console.log(`conversion: ${rows.toLocaleString('en')} rows in an unpartitioned activity_log (${(Number(bytes) / 2 ** 30).toFixed(2)} GiB with its 7 indexes), loaded in ${seconds(loadMs)}`)

    // A lock seen in consecutive samples: from the sample before it was first seen to
    // the sample that no longer saw it is an upper bound of how long it was held.
    const blocking = new Set(['ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock'])
    const spans = new Map<string, { from: number }>()
    let longest = { what: 'none', ms: 0 }
    let samples = 0
    const state = { watching: true }
    const watch = (async () => {
      let previous = performance.now()
      while (state.watching) {
        const locks = await watcher<Array<{ rel: string, mode: string }>>`
          select coalesce(c.relname, l.relation::text) as rel, l.mode from pg_locks l left join pg_class c on c.oid = l.relation
          where l.locktype = 'relation' and l.granted and l.pid <> pg_backend_pid()
            and l.database = (select oid from pg_database where datname = current_database())
            and (c.relname is null or c.relname like 'activity_log%')`
        const now = performance.now()
        samples++
        const seen = new Set(locks.filter((l) => blocking.has(l.mode)).map((l) => `${l.mode} on ${l.rel}`))
        for (const key of seen) if (!spans.has(key)) spans.set(key, { from: previous })
        for (const [key, span] of spans) {
          if (now - span.from > longest.ms) longest = { what: key, ms: now - span.from }
          if (!seen.has(key)) spans.delete(key)
        }
        previous = now
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
    })()
    const loop = (run: () => Promise<unknown>) => {
      const stats = { count: 0, slowest: 0 }
      const done = (async () => {
        while (state.watching) {
          const at = performance.now()
          await run()
          stats.slowest = Math.max(stats.slowest, performance.now() - at)
          stats.count++
          await new Promise((resolve) => setTimeout(resolve, 10))
        }
      })()
      return { stats, done }
    }
    const write = loop(async () => await writer`insert into activity_log (level, action, module) values ('info', 'during_conversion', 'bench')`)
    const read = loop(async () => await reader`select log_id from activity_log where created_at >= now() - interval '1 day' order by created_at desc, log_id desc limit 20`)

    handle = await openDatabase({ url: database.url, dataDir: '', poolMax: 1 })
    let started = performance.now()
    await prepareActivityPartitioning(preparer)
    const prepared = performance.now() - started
    started = performance.now()
    await migrateDatabase(handle, { log: () => {} })
    const migrated = performance.now() - started
    state.watching = false
    await Promise.all([watch, write.done, read.done])
    const [{ kind, n }] = await sql<Array<{ kind: string, n: number }>>`select (select relkind::text from pg_class where oid = 'activity_log'::regclass) as kind, count(*)::int as n from activity_log`
    console.log(`conversion: ${seconds(prepared + migrated)} in all: preparation (CHECK NOT VALID, VALIDATE, CREATE UNIQUE INDEX CONCURRENTLY) ${seconds(prepared)}, migration 0002 onwards (one transaction) ${seconds(migrated)}`)
    console.log(`conversion: activity_log is now ${kind === 'p' ? 'partitioned' : kind}, ${n.toLocaleString('en')} rows`)
    console.log(`conversion: longest write-blocking lock seen (${samples} samples of pg_locks, about every 10 ms): ${longest.what}, at most ${longest.ms.toFixed(0)} ms`)
    console.log(`conversion: concurrent inserts ${write.stats.count}, slowest ${write.stats.slowest.toFixed(0)} ms; concurrent first-page reads ${read.stats.count}, slowest ${read.stats.slowest.toFixed(0)} ms`)
  } finally {
    await handle?.close()
    await Promise.all([sql.end(), watcher.end(), writer.end(), reader.end(), preparer.end()])
    rmSync(before, { recursive: true, force: true })
    await database.drop()
  }
}

const part = process.argv[2]
if (part && part !== 'conversion' && part !== 'scale') throw new Error('usage: bench:partitions [conversion|scale]')
if (!part || part === 'conversion') await conversion()
if (!part || part === 'scale') await scale()
