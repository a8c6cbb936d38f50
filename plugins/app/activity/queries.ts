import fp from 'fastify-plugin'
import { and, desc, eq, getTableColumns, sql, type Placeholder, type SQL } from 'drizzle-orm'
import { executeRows, statementCache, type Database } from '../../../db/client.ts'
import { activityLevels, activityLog, type ActivityLevel, type ActivityLog } from '../../../db/schema/index.ts'
import { decodeCursor as decodeCursorOf, encodeCursor as encodeCursorOf, isTimestamp, isUuid } from '../../../schemas/cursor.ts'
import { STATISTICS_TOP_ACTIONS, type ActivityLogEntry } from '../../../schemas/activity.ts'
import { dropPartitionsBefore, isPartitioned, withMaintenanceLock } from './partitions.ts'

/**
 * Reading the activity log: filtered lists with keyset pagination, one row,
 * statistics and the retention cleanup. Lists are ordered by
 * (created_at desc, log_id desc), which the table's index serves directly; every
 * filter has an index ending in created_at, so a page stays an index range scan
 * on a table of millions of rows. A cursor is the position after the last row
 * seen: rows inserted meanwhile are newer, so they can only appear on a first
 * page, never shift or repeat rows on the next ones.
 *
 * The table is partitioned by created_at (partitions.ts), so every query carries a
 * time bound PostgreSQL can prune partitions with: a page first looks only at the
 * day before its position (now, or the cursor's time, which also bounds it from
 * above), then the month, and reads further back only when neither fills the page;
 * statistics always have a from/to range.
 */
export interface ActivityFilters {
  userId?: string
  level?: ActivityLevel
  action?: string
  module?: string
  ip?: string
  from?: Date
  to?: Date
}

export interface ActivityPage { items: ActivityLogEntry[], nextCursor: string | null }

export interface ActivityStatistics {
  total: number
  by_level: Array<{ level: ActivityLevel, count: number }>
  by_action: Array<{ action: string, count: number }>
  by_module: Array<{ module: string, count: number }>
  per_day: Array<{ date: string, count: number }>
}

export interface ActivityQueries {
  list: (filters: ActivityFilters, page: { limit: number, cursor?: string }) => Promise<ActivityPage>
  get: (logId: string) => Promise<ActivityLogEntry | undefined>
  statistics: (filters: ActivityFilters & { from: Date, to: Date }, tz: string) => Promise<ActivityStatistics>
  /** Deletes rows older than `cutoff`, in batches; returns how many. */
  cleanup: (cutoff: Date) => Promise<number>
}

declare module 'fastify' {
  interface FastifyInstance { activityQueries: ActivityQueries }
}

const CURSOR_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/
const CLEANUP_BATCH = 5000
/**
 * How far back a page looks first, then second, before it reads without a lower
 * bound: at the write rates partitioning is for, a day holds many pages; a month
 * (one or two partitions) serves the filters that match fewer rows than a page a
 * day, whose unbounded read would probe every partition.
 */
export const LIST_WINDOWS_MS = [86_400_000, 31 * 86_400_000] as const
export const LIST_WINDOW_MS = LIST_WINDOWS_MS[0]

// Microseconds: a cursor rounded to milliseconds would skip rows written by PostgreSQL's clock.
const cursorTime = sql<string>`to_char(${activityLog.created_at} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`

export function encodeCursor (at: string, id: string) {
  return encodeCursorOf([at, id])
}

export function decodeCursor (cursor: string): { at: string, id: string } {
  const [at, id] = decodeCursorOf(cursor, (value): value is [string, string] =>
    Array.isArray(value) && value.length === 2 && CURSOR_TIME.test(String(value[0])) && isTimestamp(value[0]) && isUuid(value[1]))
  return { at, id }
}

export function toEntry (row: ActivityLog): ActivityLogEntry {
  return {
    log_id: row.log_id,
    level: row.level,
    action: row.action,
    module: row.module,
    message: row.message,
    user_id: row.user_id,
    target_user_id: row.target_user_id,
    session_id: row.session_id,
    ip_address: row.ip_address,
    user_agent: row.user_agent,
    device: row.device,
    browser: row.browser,
    os: row.os,
    endpoint: row.endpoint,
    method: row.method,
    status_code: row.status_code,
    request_id: row.request_id,
    duration_ms: row.duration_ms,
    metadata: row.metadata ?? null,
    created_at: row.created_at.toISOString()
  }
}

export type Filter = keyof ActivityFilters
const filterNames: readonly Filter[] = ['userId', 'level', 'action', 'module', 'ip', 'from', 'to']
const filterColumns = { userId: 'user_id', level: 'level', action: 'action', module: 'module', ip: 'ip_address' } as const

/** One filter's condition; `value` is the value (an ISO time for from/to) or a placeholder. */
function filterSql (name: Filter, value: string | Placeholder): SQL {
  switch (name) {
    case 'from': return sql`${activityLog.created_at} >= ${value}::timestamptz`
    case 'to': return sql`${activityLog.created_at} <= ${value}::timestamptz`
    default: return eq(activityLog[filterColumns[name]], value)
  }
}

/** The filters set in `f`, with their values as bound (times as ISO text). */
function filterValues (f: ActivityFilters): Array<[Filter, string]> {
  const set: Array<[Filter, string]> = []
  for (const name of filterNames) {
    const value = f[name]
    if (value) set.push([name, value instanceof Date ? value.toISOString() : value])
  }
  return set
}

function conditions (f: ActivityFilters): SQL[] {
  return filterValues(f).map(([name, value]) => filterSql(name, value))
}

/** The calendar days from `from` to `to` as seen in `tz` (YYYY-MM-DD), for zero-filling. */
function daysBetween (from: Date, to: Date, tz: string): string[] {
  const format = new Intl.DateTimeFormat('en-CA', { timeZone: tz, year: 'numeric', month: '2-digit', day: '2-digit' })
  const last = format.format(to)
  const days: string[] = []
  for (let day = new Date(`${format.format(from)}T00:00:00Z`); ; day = new Date(day.getTime() + 86_400_000)) {
    const label = day.toISOString().slice(0, 10)
    days.push(label)
    if (label >= last || days.length > 4000) break
  }
  return days
}

/**
 * Where a page's bounded read over `windowMs` starts (ISO time), or undefined when
 * the filters already bound it at least as tightly: `windowMs` before the newest
 * time the page can hold (the cursor's, `to`, or now).
 */
export function listWindowStart (filters: ActivityFilters, cursorAt: string | undefined, now: number, windowMs: number = LIST_WINDOW_MS): string | undefined {
  const upper = Math.min(cursorAt ? Date.parse(cursorAt) : now, filters.to?.getTime() ?? Infinity)
  const since = upper - windowMs
  if (filters.from && filters.from.getTime() >= since) return undefined
  return new Date(since).toISOString()
}

/** The starts of the bounded reads a page tries in turn (LIST_WINDOWS_MS), up to the first the filters already bound. */
export function listWindowStarts (filters: ActivityFilters, cursorAt: string | undefined, now: number): string[] {
  const starts: string[] = []
  for (const windowMs of LIST_WINDOWS_MS) {
    const since = listWindowStart(filters, cursorAt, now, windowMs)
    if (since === undefined) break
    starts.push(since)
  }
  return starts
}

/**
 * How many rows a list statement reads: the page size plus one, rounded up to one of
 * a few sizes written into the statement as a literal LIMIT. With `LIMIT $n` the
 * planner prices the generic plan as if a tenth of the table were read, never
 * chooses it, and plans every execution anew, which on the partitioned table costs
 * more than running the query (docs/performance.md, "Activity lists").
 */
const FETCH_SIZES = [11, 21, 51, 101] as const
/** How often a page of a sparse filter tries the narrowest window again (see `list`). */
const HINT_RETRY = 32
export const fetchSize = (limit: number): number => FETCH_SIZES.find((size) => size > limit) ?? limit + 1

/**
 * A list query with placeholders for the named filters, and with a cursor
 * (`cursor_at`, `cursor_id`) and a window (`since`), reading `rows` rows. The
 * cursor also bounds created_at from above on its own, since partition pruning
 * does not read row comparisons.
 */
export function listSelect (db: Database, names: readonly Filter[], withCursor: boolean, withWindow: boolean, rows: number) {
  const where = names.map((name) => filterSql(name, sql.placeholder(name)))
  if (withCursor) {
    where.push(sql`${activityLog.created_at} <= ${sql.placeholder('cursor_at')}::timestamptz`)
    where.push(sql`(${activityLog.created_at}, ${activityLog.log_id}) < (${sql.placeholder('cursor_at')}::timestamptz, ${sql.placeholder('cursor_id')}::uuid)`)
  }
  if (withWindow) where.push(sql`${activityLog.created_at} >= ${sql.placeholder('since')}::timestamptz`)
  return db.select({ ...getTableColumns(activityLog), cursor_at: cursorTime })
    .from(activityLog)
    .where(and(...where))
    .orderBy(desc(activityLog.created_at), desc(activityLog.log_id))
    // drizzle binds a number as a parameter; an SQL chunk is written into the text as is.
    .limit(sql.raw(String(Math.trunc(rows))) as unknown as number)
}

/** The statistics query: one scan, four groupings, over the from/to range (which prunes partitions). */
export function statisticsSql (filters: ActivityFilters & { from: Date, to: Date }, tz: string): SQL {
  const where = conditions(filters)
  // GROUPING SETS instead of four queries. grouping() tells the sets apart
  // (a bit per argument, set when the row is NOT grouped by it).
  return sql`
    select level, action, module, day, grouping(level, action, module, day)::int as g, count(*)::int as n
    from (
      select level, action, module, to_char(created_at at time zone ${tz}, 'YYYY-MM-DD') as day
      from ${activityLog}
      ${where.length > 0 ? sql`where ${and(...where)}` : sql``}
    ) rows
    group by grouping sets ((level), (action), (module), (day), ())`
}

export default fp(async (fastify) => {
  const { db } = fastify

  /**
   * The list query of each combination of filters (and cursor), built and prepared
   * on first use; values are bound per request (drizzle built the SQL on every call).
   */
  const listQuery = statementCache<ReturnType<typeof prepareList>>()

  function prepareList (names: readonly Filter[], withCursor: boolean, withWindow: boolean, rows: number, n: number) {
    return listSelect(db, names, withCursor, withWindow, rows).prepare(`activity_list_${n}`)
  }

  /** Per combination of filters (at most 2^7 keys): the index of the window that filled its last page. */
  const windowHints = new Map<string, number>()
  let pages = 0

  const queries: ActivityQueries = {
    async list (filters, { limit, cursor }) {
      const position = cursor ? decodeCursor(cursor) : undefined
      const set = filterValues(filters)
      const names = set.map(([name]) => name)
      const rowCount = fetchSize(limit)
      const run = async (since: string | undefined) => {
        const key = `${names.join(',')}|${position ? 'cursor' : ''}|${since ? 'window' : ''}|${rowCount}`
        const query = listQuery(key, (n) => prepareList(names, position !== undefined, since !== undefined, rowCount, n))
        return await query.execute({
          ...Object.fromEntries(set),
          ...(position ? { cursor_at: position.at, cursor_id: position.id } : {}),
          ...(since ? { since } : {})
        })
      }
      // A window's rows are all newer than any outside it: a full page from any window is
      // the page. So a page starts at the window that filled the last page of the same
      // filters (a sparse filter skips the reads that would come back short), and every
      // HINT_RETRY-th page starts from the narrowest again, in case the rows grew denser.
      const starts = listWindowStarts(filters, position?.at, fastify.now())
      const hintKey = names.join(',')
      const first = pages++ % HINT_RETRY === 0 ? 0 : Math.min(windowHints.get(hintKey) ?? 0, starts.length)
      let rows: Awaited<ReturnType<typeof run>> | undefined
      let filled = starts.length
      for (let i = first; i < starts.length; i++) {
        const found = await run(starts[i])
        if (found.length > limit) {
          rows = found
          filled = i
          break
        }
      }
      rows ??= await run(undefined)
      windowHints.set(hintKey, filled)
      const more = rows.length > limit
      const page = more ? rows.slice(0, limit) : rows
      const last = page.at(-1)
      return { items: page.map(toEntry), nextCursor: more && last ? encodeCursor(last.cursor_at, last.log_id) : null }
    },

    async get (logId) {
      const [row] = await db.select().from(activityLog).where(eq(activityLog.log_id, logId))
      return row ? toEntry(row) : undefined
    },

    async statistics (filters, tz) {
      const rows = await executeRows<{ level: ActivityLevel | null, action: string | null, module: string | null, day: string | null, g: number, n: number }>(db, statisticsSql(filters, tz))
      const pick = (g: number) => rows.filter((r) => Number(r.g) === g)
      const levels = new Map(pick(0b0111).map((r) => [r.level!, Number(r.n)]))
      const days = new Map(pick(0b1110).map((r) => [r.day!, Number(r.n)]))
      return {
        total: Number(pick(0b1111)[0]?.n ?? 0),
        by_level: activityLevels.map((level) => ({ level, count: levels.get(level) ?? 0 })),
        by_action: pick(0b1011).map((r) => ({ action: r.action!, count: Number(r.n) }))
          .sort((a, b) => b.count - a.count || a.action.localeCompare(b.action)).slice(0, STATISTICS_TOP_ACTIONS),
        by_module: pick(0b1101).map((r) => ({ module: r.module!, count: Number(r.n) }))
          .sort((a, b) => b.count - a.count || a.module.localeCompare(b.module)),
        per_day: daysBetween(filters.from, filters.to, tz).map((date) => ({ date, count: days.get(date) ?? 0 }))
      }
    },

    async cleanup (cutoff) {
      // Whole partitions past the cutoff are dropped (no index rewrite, no bloat);
      // only the partition holding the cutoff, and the DEFAULT one, need a DELETE.
      let deleted = 0
      if (await isPartitioned(db)) deleted += (await withMaintenanceLock(db, true, async (tx) => await dropPartitionsBefore(tx, cutoff, { count: true })))?.rows ?? 0
      const at = cutoff.toISOString()
      // Batches keep each statement (and its locks) short on a large table.
      for (;;) {
        const gone = await executeRows<{ n: number }>(db, sql`
          with gone as (
            delete from ${activityLog} where ${activityLog.created_at} < ${at}::timestamptz and (${activityLog.log_id}, ${activityLog.created_at}) in (
              select ${activityLog.log_id}, ${activityLog.created_at} from ${activityLog} where ${activityLog.created_at} < ${at}::timestamptz limit ${CLEANUP_BATCH})
            returning 1)
          select count(*)::int as n from gone`)
        const n = Number(gone[0]?.n ?? 0)
        deleted += n
        if (n < CLEANUP_BATCH) return deleted
      }
    }
  }
  fastify.decorate('activityQueries', queries)
}, { name: 'activity-queries', dependencies: ['db'] })
