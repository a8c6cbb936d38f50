import fp from 'fastify-plugin'
import { sql, type SQL } from 'drizzle-orm'
import type { Database } from '../../../db/client.ts'

/**
 * activity_log's partitions (docs/activity-log.md). Migration 0002 makes the table
 * partitioned by RANGE (created_at) with one partition for everything older than
 * the conversion (activity_log_legacy) and a DEFAULT partition; this keeps
 * ACTIVITY_PARTITIONS_AHEAD partitions of ACTIVITY_PARTITION_INTERVAL ready past the
 * current one and drops the partitions wholly older than ACTIVITY_RETENTION_DAYS, at
 * start and every ACTIVITY_MAINTENANCE_INTERVAL_MINUTES, on one instance at a time
 * (a transaction-scoped advisory lock; the others skip the round).
 *
 * A row no partition covers (a clock far off, or partitions not yet created) goes
 * to the DEFAULT partition, so an insert never fails; creating the partition that
 * covers it moves it out of DEFAULT, and the cleanup deletes expired ones there.
 *
 * Locks: a partition is created standalone and ATTACHed (SHARE UPDATE EXCLUSIVE on
 * activity_log: reads and inserts go on); DROP TABLE of a partition takes ACCESS
 * EXCLUSIVE on activity_log for the catalog change only (milliseconds). Both run
 * with a lock_timeout, so a long query in the way postpones a round instead of
 * queueing every insert behind the DDL.
 */
export type PartitionInterval = 'month' | 'week' | 'day'

export interface ActivityPartition {
  name: string
  /** Inclusive lower bound; null for MINVALUE. */
  from: Date | null
  /** Exclusive upper bound; null for MAXVALUE. */
  to: Date | null
  isDefault: boolean
}

export interface MaintenanceResult { created: string[], dropped: string[] }

export const ACTIVITY_PARTITIONS_AHEAD = 3
const DAY_MS = 86_400_000
// Any bigint nothing else in the database takes an advisory lock on.
export const MAINTENANCE_LOCK_KEY = '4177359124605317123'
const LOCK_TIMEOUT = '3s'

interface Executor { execute: (query: SQL) => Promise<unknown> }

async function rows<T> (db: Executor, query: SQL): Promise<T[]> {
  const result = await db.execute(query)
  return (Array.isArray(result) ? [...result] : (result as { rows: T[] }).rows) as T[]
}

/** The first boundary of `interval` (UTC months, ISO weeks from Monday, days) strictly after `t`. */
export function nextBoundary (t: Date, interval: PartitionInterval): Date {
  const y = t.getUTCFullYear()
  const m = t.getUTCMonth()
  const d = t.getUTCDate()
  if (interval === 'month') return new Date(Date.UTC(y, m + 1, 1))
  const day = Date.UTC(y, m, d)
  if (interval === 'day') return new Date(day + DAY_MS)
  const sinceMonday = (t.getUTCDay() + 6) % 7
  return new Date(day + (7 - sinceMonday) * DAY_MS)
}

/** The start of the `interval` holding `t`. */
export function intervalStart (t: Date, interval: PartitionInterval): Date {
  const next = nextBoundary(t, interval)
  const back = interval === 'month' ? new Date(Date.UTC(next.getUTCFullYear(), next.getUTCMonth() - 1, 1)) : new Date(next.getTime() - (interval === 'day' ? 1 : 7) * DAY_MS)
  return back
}

export function partitionName (from: Date): string {
  return `activity_log_p${from.toISOString().slice(0, 10).replaceAll('-', '')}`
}

/** Whether activity_log is partitioned (false before migration 0002, or if a database kept a plain table). */
export async function isPartitioned (db: Executor): Promise<boolean> {
  const [table] = await rows<{ kind: string }>(db, sql`select relkind::text as kind from pg_class where oid = to_regclass('public.activity_log')`)
  return table?.kind === 'p'
}

/** activity_log's partitions, oldest first (the DEFAULT one last); empty when the table is not partitioned. */
export async function listPartitions (db: Executor): Promise<ActivityPartition[]> {
  // The bounds are printed in this session's time zone and read back in it.
  const found = await rows<{ name: string, bound: string, from: number | string | null, to: number | string | null }>(db, sql`
    select name, bound,
      extract(epoch from (substring(bound from 'FROM [(]''([^'']+)''[)]'))::timestamptz)::float8 * 1000 as "from",
      extract(epoch from (substring(bound from 'TO [(]''([^'']+)''[)]'))::timestamptz)::float8 * 1000 as "to"
    from (
      select c.relname::text as name, pg_get_expr(c.relpartbound, c.oid) as bound
      from pg_inherits i join pg_class c on c.oid = i.inhrelid
      where i.inhparent = to_regclass('public.activity_log')
    ) p`)
  const toDate = (value: number | string | null) => value === null ? null : new Date(Number(value))
  return found.map((p) => ({ name: p.name, from: toDate(p.from), to: toDate(p.to), isDefault: p.bound === 'DEFAULT' }))
    .sort((a, b) => Number(a.isDefault) - Number(b.isDefault) || (a.from?.getTime() ?? -Infinity) - (b.from?.getTime() ?? -Infinity))
}

/**
 * Creates the partitions missing between the newest one and the end of the
 * interval `ahead` intervals after the one holding `now`. Rows the DEFAULT
 * partition holds in a new range move into it first (ATTACH refuses otherwise).
 */
export async function createPartitionsAhead (db: Executor, interval: PartitionInterval, now: Date, ahead = ACTIVITY_PARTITIONS_AHEAD): Promise<string[]> {
  const partitions = await listPartitions(db)
  if (partitions.length === 0) return []
  let until = nextBoundary(now, interval)
  for (let i = 0; i < ahead; i++) until = nextBoundary(until, interval)
  const uppers = partitions.filter((p) => !p.isDefault && p.to !== null).map((p) => p.to!.getTime())
  if (partitions.some((p) => !p.isDefault && p.to === null)) return []
  // After a downtime longer than the partitions ahead (or under a test clock), the
  // missed intervals are left to the DEFAULT partition rather than created one by one.
  let start = new Date(Math.max(intervalStart(now, interval).getTime(), ...uppers))
  const created: string[] = []
  const defaultPartition = partitions.find((p) => p.isDefault)?.name
  while (start < until) {
    const end = nextBoundary(start, interval)
    const name = partitionName(start)
    const from = start.toISOString()
    const to = end.toISOString()
    await db.execute(sql.raw(`create table "${name}" (like activity_log including defaults including constraints)`))
    if (defaultPartition) {
      await db.execute(sql.raw(`with moved as (delete from "${defaultPartition}" where created_at >= '${from}' and created_at < '${to}' returning *)
        insert into "${name}" select * from moved`))
    }
    await db.execute(sql.raw(`alter table activity_log attach partition "${name}" for values from ('${from}') to ('${to}')`))
    created.push(name)
    start = end
  }
  return created
}

/**
 * Drops the range partitions whose whole range is before `cutoff`; with `count`,
 * first counts their rows (for the cleanup's answer).
 */
export async function dropPartitionsBefore (db: Executor, cutoff: Date, options: { count?: boolean } = {}): Promise<{ dropped: string[], rows: number }> {
  const due = (await listPartitions(db)).filter((p) => !p.isDefault && p.to !== null && p.to <= cutoff)
  let total = 0
  for (const partition of due) {
    if (options.count) {
      const [{ n }] = await rows<{ n: number }>(db, sql.raw(`select count(*)::bigint as n from "${partition.name}"`))
      total += Number(n)
    }
    await db.execute(sql.raw(`drop table "${partition.name}"`))
  }
  return { dropped: due.map((p) => p.name), rows: total }
}

interface TransactionalDatabase { transaction: <T>(run: (tx: Executor) => Promise<T>) => Promise<T> }

/**
 * Runs `work` in a transaction holding the maintenance lock, with a lock_timeout
 * on its DDL. `wait`: wait for the lock (the cleanup route) instead of skipping
 * when another instance holds it (the schedule); returns undefined when skipped.
 */
export async function withMaintenanceLock<T> (db: Database, wait: boolean, work: (tx: Executor) => Promise<T>): Promise<T | undefined> {
  return await (db as unknown as TransactionalDatabase).transaction(async (tx) => {
    if (wait) {
      await tx.execute(sql`select pg_advisory_xact_lock(${MAINTENANCE_LOCK_KEY}::bigint)`)
    } else {
      const [lock] = await rows<{ ok: boolean }>(tx, sql`select pg_try_advisory_xact_lock(${MAINTENANCE_LOCK_KEY}::bigint) as ok`)
      if (!lock?.ok) return undefined
    }
    await tx.execute(sql.raw(`set local lock_timeout = '${LOCK_TIMEOUT}'`))
    return await work(tx)
  })
}

/** One maintenance round: partitions ahead, then retention. Undefined when another instance is at it. */
export async function maintainPartitions (db: Database, options: { interval: PartitionInterval, retentionDays: number, now: Date }): Promise<MaintenanceResult | undefined> {
  return await withMaintenanceLock(db, false, async (tx) => {
    if (!await isPartitioned(tx)) return { created: [], dropped: [] }
    const created = await createPartitionsAhead(tx, options.interval, options.now)
    if (options.retentionDays === 0) return { created, dropped: [] }
    const cutoff = new Date(options.now.getTime() - options.retentionDays * DAY_MS)
    const { dropped } = await dropPartitionsBefore(tx, cutoff)
    // The DEFAULT partition holds only rows no range covered: few, so one DELETE.
    await tx.execute(sql`delete from activity_log_default where created_at < ${cutoff.toISOString()}::timestamptz`)
    return { created, dropped }
  })
}

declare module 'fastify' {
  interface FastifyInstance {
    activityPartitions: {
      /** Runs a maintenance round now (also what the schedule calls). */
      maintain: () => Promise<MaintenanceResult | undefined>
    }
  }
}

export default fp(async (fastify) => {
  const { db, config, log } = fastify
  const maintain = async () => {
    const result = await maintainPartitions(db, {
      interval: config.ACTIVITY_PARTITION_INTERVAL as PartitionInterval,
      retentionDays: config.ACTIVITY_RETENTION_DAYS,
      now: new Date(fastify.now())
    })
    if (result && (result.created.length > 0 || result.dropped.length > 0)) log.info({ activityPartitions: result }, 'activity_log partitions maintained')
    return result
  }
  const round = () => {
    maintain().catch((error: unknown) => log.warn({ err: error }, 'activity_log partition maintenance failed; retried next round'))
  }
  fastify.decorate('activityPartitions', { maintain })
  // At start: a failure (e.g. lock_timeout behind a long query) must not stop the
  // service, since the DEFAULT partition takes the rows meanwhile.
  fastify.addHook('onReady', async () => { await maintain().catch((error: unknown) => log.warn({ err: error }, 'activity_log partition maintenance failed at start; retried next round')) })
  const timer = setInterval(round, config.ACTIVITY_MAINTENANCE_INTERVAL_MINUTES * 60_000)
  timer.unref()
  fastify.addHook('onClose', async () => clearInterval(timer))
}, { name: 'activity-partitions', dependencies: ['db'] })
