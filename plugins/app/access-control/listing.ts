import { and, asc, count, gt, ilike, or, type SQL } from 'drizzle-orm'
import type { PgColumn, PgTable } from 'drizzle-orm/pg-core'
import type { Database } from '../../../db/client.ts'
import { decodeCursor, encodeCursor, isText } from '../../../schemas/cursor.ts'

/**
 * Lists of the admin API: a page, its total and the keyset cursor of the next
 * page. Permissions and groups page by their unique codename. Not a plugin:
 * autoload skips it.
 */
export interface ListPage<T> { items: T[], total: number, nextCursor: string | null }
export interface ListOptions { limit: number, offset?: number, cursor?: string }

/** `%term%` for ILIKE, with the wildcards of the term escaped (Postgres' default escape is the backslash). */
export const containsPattern = (term: string) => `%${term.replace(/[\\%_]/g, (c) => `\\${c}`)}%`

/** The codename a codename cursor continues after (SR-29: checked before it reaches SQL). */
const afterCodename = (cursor: string) => decodeCursor(cursor, (v): v is { after: string } => isText((v as { after?: unknown } | null)?.after, 64)).after

/** Rows whose codename, name or description contains `q` (case-insensitive). */
export const searchIn = (q: string, columns: { codename: PgColumn, name: PgColumn, description: PgColumn }) => {
  const pattern = containsPattern(q)
  return or(ilike(columns.codename, pattern), ilike(columns.name, pattern), ilike(columns.description, pattern))!
}

/** One page of `table` in codename order, by offset or after a cursor, with the total of `filters`. */
export async function pageByCodename<T extends PgTable, R extends { codename: string }> (
  db: Database, table: T, codename: PgColumn, filters: SQL[], options: ListOptions
): Promise<ListPage<R>> {
  const where = filters.length > 0 ? and(...filters) : undefined
  const pageWhere = options.cursor ? and(where, gt(codename, afterCodename(options.cursor))) : where
  const [rows, [{ total }]] = await Promise.all([
    db.select().from(table as PgTable).where(pageWhere).orderBy(asc(codename)).limit(options.limit + 1).offset(options.cursor ? 0 : options.offset ?? 0),
    db.select({ total: count() }).from(table as PgTable).where(where)
  ])
  const items = (rows as unknown as R[]).slice(0, options.limit)
  const last = items[items.length - 1]
  return { items, total, nextCursor: rows.length > options.limit ? encodeCursor({ after: last.codename }) : null }
}
