import fp from 'fastify-plugin'
import { and, desc, eq, getTableColumns, inArray, lt, sql, type Placeholder, type SQL } from 'drizzle-orm'
import { executeRows, statementCache } from '../../../db/client.ts'
import { activityLevels, activityLog, type ActivityLevel, type ActivityLog } from '../../../db/schema/index.ts'
import { decodeCursor as decodeCursorOf, encodeCursor as encodeCursorOf, isTimestamp, isUuid } from '../../../schemas/cursor.ts'
import { STATISTICS_TOP_ACTIONS, type ActivityLogEntry } from '../../../schemas/activity.ts'

/**
 * Reading the activity log: filtered lists with keyset pagination, one row,
 * statistics and the retention cleanup. Lists are ordered by
 * (created_at desc, log_id desc), which the table's index serves directly; every
 * filter has an index ending in created_at, so a page stays an index range scan
 * on a table of millions of rows. A cursor is the position after the last row
 * seen: rows inserted meanwhile are newer, so they can only appear on a first
 * page, never shift or repeat rows on the next ones.
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

type Filter = keyof ActivityFilters
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

export default fp(async (fastify) => {
  const { db } = fastify

  /**
   * The list query of each combination of filters (and cursor), built and prepared
   * on first use; values are bound per request (drizzle built the SQL on every call).
   */
  const listQuery = statementCache<ReturnType<typeof prepareList>>()

  function prepareList (names: readonly Filter[], withCursor: boolean, n: number) {
    const where = names.map((name) => filterSql(name, sql.placeholder(name)))
    if (withCursor) where.push(sql`(${activityLog.created_at}, ${activityLog.log_id}) < (${sql.placeholder('cursor_at')}::timestamptz, ${sql.placeholder('cursor_id')}::uuid)`)
    return db.select({ ...getTableColumns(activityLog), cursor_at: cursorTime })
      .from(activityLog)
      .where(and(...where))
      .orderBy(desc(activityLog.created_at), desc(activityLog.log_id))
      .limit(sql.placeholder('limit'))
      .prepare(`activity_list_${n}`)
  }

  const queries: ActivityQueries = {
    async list (filters, { limit, cursor }) {
      const position = cursor ? decodeCursor(cursor) : undefined
      const set = filterValues(filters)
      const names = set.map(([name]) => name)
      const query = listQuery(`${names.join(',')}|${position ? 'cursor' : ''}`, (n) => prepareList(names, position !== undefined, n))
      const rows = await query.execute({
        ...Object.fromEntries(set),
        limit: limit + 1,
        ...(position ? { cursor_at: position.at, cursor_id: position.id } : {})
      })
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
      const where = conditions(filters)
      // One scan, four groupings: GROUPING SETS instead of four queries. grouping() tells the sets apart
      // (a bit per argument, set when the row is NOT grouped by it).
      const rows = await executeRows<{ level: ActivityLevel | null, action: string | null, module: string | null, day: string | null, g: number, n: number }>(db, sql`
        select level, action, module, day, grouping(level, action, module, day)::int as g, count(*)::int as n
        from (
          select level, action, module, to_char(created_at at time zone ${tz}, 'YYYY-MM-DD') as day
          from ${activityLog}
          ${where.length > 0 ? sql`where ${and(...where)}` : sql``}
        ) rows
        group by grouping sets ((level), (action), (module), (day), ())`)
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
      let deleted = 0
      // Batches keep each statement (and its locks) short on a large table.
      for (;;) {
        const oldest = db.select({ id: activityLog.log_id }).from(activityLog).where(lt(activityLog.created_at, cutoff)).limit(CLEANUP_BATCH)
        const gone = await db.delete(activityLog).where(inArray(activityLog.log_id, oldest)).returning({ id: activityLog.log_id })
        deleted += gone.length
        if (gone.length < CLEANUP_BATCH) return deleted
      }
    }
  }
  fastify.decorate('activityQueries', queries)
}, { name: 'activity-queries', dependencies: ['db'] })
