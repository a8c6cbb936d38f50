import { mkdtempSync, rmSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import path from 'node:path'
import Fastify, { type FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import postgres from 'postgres'
import { Placeholder } from 'drizzle-orm'
import { PgDialect } from 'drizzle-orm/pg-core'
import { openDatabase, type DatabaseHandle } from '../../db/client.ts'
import { migrateDatabase } from '../../db/migrate.ts'
import { seedDatabase } from '../../db/seed.ts'
import queriesPlugin, { fetchSize, listSelect, listWindowStarts, statisticsSql, type ActivityFilters, type Filter } from '../../plugins/app/activity/queries.ts'
import { dropPartitionsBefore, listPartitions, maintainPartitions, withMaintenanceLock } from '../../plugins/app/activity/partitions.ts'
import { API, bearer, login } from './api.ts'
import { adminEmail, startApi, type Server } from './servers.ts'
import { DAY, loadRows, median, niceBackend, scratchDatabase, seconds } from './activity-data.ts'
import { deleteRedisKeys } from './stack.ts'

/**
 * `npm run bench:partitions -- scale` (docs/activity-log.md). Two scratch
 * databases, each with a partitioned activity_log in monthly partitions over
 * BENCH_SCALE_DAYS (365) and its own API process (server.ts): one loaded with
 * BENCH_SCALE_SMALL_ROWS (1,000,000), one with BENCH_SCALE_ROWS (20,000,000), both
 * in SQL, newest first, at the same rate. The small one is therefore the most
 * recent days of the large one, which adds older history, as a deployment
 * accumulating it would. The first page, two filtered pages, activity/me and a
 * 7-day statistic are timed on both, alternating between them request by request
 * (BENCH_SCALE_REPEAT, 31, each), so that the load of a shared machine falls on
 * both alike. Each is timed twice: through the API's query functions
 * (plugins/app/activity/queries.ts, what the routes call) and over HTTP
 * (BENCH_SCALE_HTTP=0 skips it). EXPLAIN ANALYZE of each query is printed for
 * both. Then retention on the large one: maintenance rounds (partitions.ts) that
 * drop one month, the cleanup's query function with a cutoff on a boundary, and
 * DELETE P/activity/cleanup over HTTP. BENCH_SCALE_LOAD=indexed loads into the
 * indexed table instead of dropping and rebuilding the secondary indexes.
 */

interface Case {
  name: string
  filters: ActivityFilters
  /** The HTTP request (path after P, querystring included). */
  path: string
  statistics?: boolean
}

const LIMIT = 50

interface Site {
  label: string
  sql: postgres.Sql
  handle: DatabaseHandle
  app: FastifyInstance
  server?: Server
  session: string
  me: string
  drop: () => Promise<void>
}

const iso = (t: number) => new Date(t).toISOString()

/** A scratch database, migrated and seeded, with its API process, 100 actors and monthly partitions over the range. */
async function openSite (label: string, now: Date, days: number, env: Record<string, string> | undefined, sites: Site[]): Promise<Site> {
  const database = await scratchDatabase()
  const sql = postgres(database.url, { max: 1, onnotice: () => {} })
  const handle = await openDatabase({ url: database.url, dataDir: '', poolMax: 2 })
  const app = Fastify()
  const site: Site = {
    label,
    sql,
    handle,
    app,
    session: '',
    me: '',
    drop: async () => {
      await site.server?.stop()
      await app.close()
      await handle.close()
      await sql.end()
      await database.drop()
    }
  }
  sites.push(site)
  await migrateDatabase(handle, { log: () => {} })
  await seedDatabase(handle.db)
  if (env) {
    site.server = await startApi(`activity-scale-${label}`, { ...env, DATABASE_URL: database.url })
    site.session = (await login(site.server)).session
  }
  // 100 actors: the bootstrap admin (first in email order, the one of activity/me) and 99 more.
  await sql.unsafe('insert into "user" (email) select \'bench\' || i || \'@example.com\' from generate_series(1, 100 - (select count(*) from "user" where email like \'bench%\')) i')
  const [me] = await sql<Array<{ id: string, email: string }>>`select user_id as id, email from "user" where email like 'bench%' order by email limit 1`
  if (env && me.email !== adminEmail) throw new Error('the bootstrap admin is not the first bench actor')
  site.me = me.id
  // The (empty) partitions of the conversion and of the server's start go, and the
  // maintenance walks a clock from before the oldest row to now as its schedule would.
  await withMaintenanceLock(handle.db, true, async (tx) => await dropPartitionsBefore(tx, new Date(now.getTime() + 200 * DAY)))
  for (let at = now.getTime() - (days + 31) * DAY; ; at = Math.min(now.getTime(), at + 28 * DAY)) {
    await maintainPartitions(handle.db, { interval: 'month', retentionDays: 0, now: new Date(at) })
    if (at === now.getTime()) break
  }
  await app.register(fp(async (f) => { f.decorate('db', handle.db) }, { name: 'db' }))
  app.decorate('now', () => now.getTime())
  await app.register(queriesPlugin)
  await app.ready()
  await sql.unsafe('set synchronous_commit = off')
  await sql.unsafe('set maintenance_work_mem = \'256MB\'')
  await sql.unsafe('set max_parallel_maintenance_workers = 0')
  await niceBackend(sql)
  return site
}

function casesOf (site: Site, now: Date): Case[] {
  const monthAgo = now.getTime() - 30 * DAY
  const weekAgo = now.getTime() - 7 * DAY
  return [
    { name: 'first page', filters: {}, path: `/activity?limit=${LIMIT}` },
    { name: 'filtered: module, level, last 30 days', filters: { module: 'auth', level: 'error', from: new Date(monthAgo) }, path: `/activity?module=auth&level=error&from=${encodeURIComponent(iso(monthAgo))}&limit=${LIMIT}` },
    { name: 'filtered: user, module (18 rows a day)', filters: { userId: site.me, module: 'auth' }, path: `/activity?user_id=${site.me}&module=auth&limit=${LIMIT}` },
    { name: 'activity/me (55 rows a day)', filters: { userId: site.me }, path: `/activity/me?limit=${LIMIT}` },
    { name: 'statistics, 7 days', filters: { from: new Date(weekAgo), to: now }, path: `/activity/statistics?from=${encodeURIComponent(iso(weekAgo))}&to=${encodeURIComponent(iso(now.getTime()))}&tz=UTC`, statistics: true }
  ]
}

function direct (site: Site, c: Case) {
  const q = site.app.activityQueries
  return c.statistics ? q.statistics({ ...c.filters, from: c.filters.from!, to: c.filters.to! }, 'UTC') : q.list(c.filters, { limit: LIMIT })
}

async function overHttp (site: Site, c: Case) {
  const res = await fetch(`http://127.0.0.1:${site.server!.port}${API}${c.path}`, { headers: bearer(site.session) })
  const body = await res.json() as { data: unknown }
  if (!res.ok) throw new Error(`${c.path}: ${res.status} ${JSON.stringify(body)}`)
  return body.data
}

const size = (result: unknown) => Array.isArray(result) ? `${result.length} rows` : 'items' in (result as object) ? `${(result as { items: unknown[] }).items.length} rows` : `total ${(result as { total: number }).total}`

/** EXPLAIN ANALYZE of the statement(s) a case runs, with its values bound as the route binds them. */
async function explain (site: Site, c: Case, now: Date): Promise<string[]> {
  const run = async (text: string, params: unknown[]) =>
    (await site.sql.unsafe<Array<{ 'QUERY PLAN': string }>>(`explain (analyze, costs off, timing off, summary off) ${text}`, params as never[])).map((r) => r['QUERY PLAN'])
  if (c.statistics) {
    const query = new PgDialect().sqlToQuery(statisticsSql({ ...c.filters, from: c.filters.from!, to: c.filters.to! }, 'UTC'))
    return await run(query.sql, query.params)
  }
  const values: Record<string, unknown> = { limit: LIMIT + 1 }
  const names: Filter[] = []
  for (const name of ['userId', 'level', 'action', 'module', 'ip', 'from', 'to'] as const) {
    const value = c.filters[name]
    if (value) { names.push(name); values[name] = value instanceof Date ? value.toISOString() : value }
  }
  const plans: string[] = []
  // The route's reads in turn: the windows, then without a lower bound, until one fills the page.
  for (const since of [...listWindowStarts(c.filters, undefined, now.getTime()), undefined]) {
    const query = listSelect(site.handle.db, names, false, since !== undefined, fetchSize(LIMIT)).toSQL()
    const params = query.params.map((p) => p instanceof Placeholder ? (p.name === 'since' ? since : values[p.name]) : p)
    const plan = await run(query.sql, params)
    plans.push(`-- ${since ? `the read since ${since}` : 'the read without a lower bound'}`, ...plan)
    const returned = Number(/actual rows=(\d+)/.exec(plan.find((l) => l.includes('Limit')) ?? '')?.[1] ?? 0)
    if (returned > LIMIT) break
  }
  return plans
}

export async function scale (): Promise<void> {
  const total = Number(process.env.BENCH_SCALE_ROWS ?? 20_000_000)
  const small = Math.min(total, Number(process.env.BENCH_SCALE_SMALL_ROWS ?? 1_000_000))
  const days = Number(process.env.BENCH_SCALE_DAYS ?? 365)
  const repeat = Number(process.env.BENCH_SCALE_REPEAT ?? 31)
  const http = process.env.BENCH_SCALE_HTTP !== '0'
  const bulk = process.env.BENCH_SCALE_LOAD !== 'indexed'
  const redisUrl = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379'
  const redisPrefix = `bench-scale:${randomBytes(4).toString('hex')}:`
  const dataDirs: string[] = []
  const sites: Site[] = []
  const now = new Date()
  const envOf = (label: string) => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'bench-scale-'))
    dataDirs.push(dataDir)
    return http ? { DATA_DIR: dataDir, REDIS_URL: redisUrl, REDIS_KEY_PREFIX: `${redisPrefix}${label}:` } : undefined
  }
  try {
    const smallSite = await openSite('small', now, days, envOf('small'), sites)
    const largeSite = await openSite('large', now, days, envOf('large'), sites)
    const stepMs = days * DAY / total
    const smallMs = await loadRows(smallSite.sql, { first: 1, last: small, newest: now, stepMs }, { bulk })
    console.log(`scale: small: loaded ${small.toLocaleString('en')} rows in ${seconds(smallMs)}`)
    const started = performance.now()
    const largeMs = await loadRows(largeSite.sql, { first: 1, last: total, newest: now, stepMs }, {
      bulk,
      onChunk: (done) => { if (done % 5_000_000 === 0) console.log(`scale: large: ${done.toLocaleString('en')} rows after ${seconds(performance.now() - started)}`) }
    })
    console.log(`scale: large: loaded ${total.toLocaleString('en')} rows over ${days} days in ${seconds(largeMs)} (generate_series, synchronous_commit off, ${bulk ? 'secondary indexes dropped and built again' : 'into the indexed table'})`)
    for (const site of sites) {
      // What autovacuum would have done by then (it is off on the bench server): hint bits, visibility map, statistics.
      const at = performance.now()
      await site.sql.unsafe('vacuum (analyze) activity_log')
      console.log(`scale: ${site.label}: vacuum (analyze) in ${seconds(performance.now() - at)}`)
    }
    const partitions = await largeSite.sql<Array<{ name: string, rows: number }>>`
      select c.relname::text as name, c.reltuples::bigint as rows from pg_inherits i join pg_class c on c.oid = i.inhrelid
      where i.inhparent = 'activity_log'::regclass order by c.relname`
    console.log(`scale: large: ${partitions.length} partitions, ${partitions.filter((p) => p.rows > 0).length} with rows: ${partitions.map((p) => `${p.name.replace('activity_log_', '')} ${Number(p.rows).toLocaleString('en')}`).join(', ')}`)

    const ways: Array<[string, (site: Site, c: Case) => Promise<unknown>]> = [['query', direct]]
    if (http) ways.push(['HTTP', overHttp])
    const summary: string[] = []
    for (const [index, c] of casesOf(smallSite, now).entries()) {
      const pair = [c, casesOf(largeSite, now)[index]]
      for (const [how, run] of ways) {
        const results = [await run(smallSite, pair[0]), await run(largeSite, pair[1])]
        const ms: number[][] = [[], []]
        for (let i = 0; i < repeat; i++) {
          for (const s of i % 2 === 0 ? [0, 1] : [1, 0]) {
            const at = performance.now()
            await run(sites[s], pair[s])
            ms[s].push(performance.now() - at)
          }
        }
        const [a, b] = ms.map(median)
        const line = `${c.name} (${how}): ${small.toLocaleString('en')} rows median ${a.toFixed(2)} ms (min ${Math.min(...ms[0]).toFixed(2)}, ${size(results[0])}), ` +
          `${total.toLocaleString('en')} rows median ${b.toFixed(2)} ms (min ${Math.min(...ms[1]).toFixed(2)}, ${size(results[1])}): ${(b / a).toFixed(2)}x`
        console.log(`scale: ${line}`)
        summary.push(line)
      }
    }
    for (const site of sites) {
      for (const c of casesOf(site, now)) console.log(`scale: ${site.label}: EXPLAIN ${c.name}\n${(await explain(site, c, now)).map((l) => `    ${l}`).join('\n')}`)
    }
    console.log(summary.map((l) => `scale: ${l}`).join('\n'))

    // Retention on the large one. The first partitions hold only part of a month.
    const full = (await listPartitions(largeSite.handle.db)).filter((p) => !p.isDefault && p.from !== null && p.to !== null && p.from.getTime() >= now.getTime() - days * DAY)
    const rowsOf = async (name: string) => Number((await largeSite.sql<Array<{ n: number }>>`select count(*)::bigint as n from ${largeSite.sql(name)}`)[0].n)
    const retain = async (label: string, drop: () => Promise<unknown>) => {
      const at = performance.now()
      const result = await drop()
      console.log(`scale: retention: ${label}: ${(performance.now() - at).toFixed(1)} ms ${JSON.stringify(result)}`)
    }
    const keepDays = (boundary: Date) => Math.floor((now.getTime() - boundary.getTime()) / DAY)
    const db = largeSite.handle.db
    await retain('maintenance round (partitions.ts), the partitions before the first whole month',
      async () => await maintainPartitions(db, { interval: 'month', retentionDays: keepDays(full[0].from!), now }))
    await retain(`maintenance round (partitions.ts), one month: ${full[0].name}, ${(await rowsOf(full[0].name)).toLocaleString('en')} rows`,
      async () => await maintainPartitions(db, { interval: 'month', retentionDays: keepDays(full[0].to!), now }))
    // What DELETE P/activity/cleanup runs, with the cutoff on a boundary: count, then drop.
    await retain(`activityQueries.cleanup (the route's function), cutoff on a boundary: ${full[1].name}`,
      async () => ({ deleted: await largeSite.app.activityQueries.cleanup(full[1].to!) }))
    if (http) {
      // The route's cutoff is a whole number of days before now: the month is dropped and
      // the rows between the boundary and the cutoff are deleted in batches.
      const keep = keepDays(full[2].to!)
      await retain(`DELETE P/activity/cleanup?days=${keep} (HTTP): drops ${full[2].name}, deletes up to a day of the next`, async () => {
        const res = await fetch(`http://127.0.0.1:${largeSite.server!.port}${API}/activity/cleanup?days=${keep}`, { method: 'DELETE', headers: bearer(largeSite.session) })
        return ((await res.json()) as { data: unknown }).data
      })
    }
  } finally {
    for (const site of sites) await site.drop().catch((error: unknown) => console.error(`scale: cleanup: ${String(error)}`))
    await deleteRedisKeys(redisUrl, redisPrefix).catch(() => {})
    for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true })
  }
}
