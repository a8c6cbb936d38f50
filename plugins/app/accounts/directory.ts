import fp from 'fastify-plugin'
import { and, asc, count, desc, eq, getTableColumns, ilike, inArray, or, sql, type Placeholder, type SQL } from 'drizzle-orm'
import { group, user, userGroup, type AuthType, type User, type UserStatus, type UserType } from '../../../db/schema/index.ts'
import { statementCache } from '../../../db/client.ts'
import { decodeCursor as decodeCursorOf, encodeCursor, isText, isTimestamp, isUuid } from '../../../schemas/cursor.ts'
import { containsPattern, type ListPage } from '../access-control/listing.ts'
import { toPublicUser, type PublicUser } from './users.ts'

/**
 * The administrators' user list (GET P/users): search, filters, sorting and
 * keyset pagination. Every value reaches SQL as a bind parameter (SR-34); the
 * search term's LIKE wildcards are escaped, so `%` finds a percent sign.
 */
export type UserSort = 'created_at' | 'last_login' | 'email'

export interface UserListOptions {
  limit: number
  offset?: number
  cursor?: string
  q?: string
  status?: UserStatus
  is_active?: boolean
  user_type?: UserType
  auth_type?: AuthType
  country?: string
  language?: string
  /** Group id or codename. */
  group?: string
  sort?: UserSort
  order?: 'asc' | 'desc'
}

export interface UserDirectory {
  list: (options: UserListOptions) => Promise<ListPage<PublicUser>>
}

declare module 'fastify' {
  interface FastifyInstance { userDirectory: UserDirectory }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/**
 * Sort keys never NULL (NULLs would break the keyset comparison): accounts that
 * never logged in sort as the oldest login, accounts without email as ''.
 * `cast` turns the cursor's text back into the key's type.
 */
const sortKeys: Record<UserSort, { expr: SQL, cast: (value: Placeholder) => SQL }> = {
  created_at: { expr: sql`${user.created_at}`, cast: (v) => sql`${v}::timestamptz` },
  last_login: { expr: sql`coalesce(${user.last_login}, '-infinity'::timestamptz)`, cast: (v) => sql`${v}::timestamptz` },
  email: { expr: sql`coalesce(lower(${user.email}), '')`, cast: (v) => sql`${v}::text` }
}

interface Cursor { k: string, id: string, s: UserSort, o: 'asc' | 'desc' }

/**
 * A cursor belongs to one sort (reusing it under another would skip or repeat
 * rows), and its key must be a value of that sort's column: a timestamp (or
 * `-infinity`, the key of accounts that never logged in), or text.
 */
function decodeCursor (raw: string, sort: UserSort, order: 'asc' | 'desc'): Cursor {
  const key = sort === 'email' ? (k: unknown) => isText(k, 400) : sort === 'last_login' ? (k: unknown) => k === '-infinity' || isTimestamp(k) : isTimestamp
  return decodeCursorOf(raw, (value): value is Cursor => {
    const c = value as Partial<Cursor> | null
    return typeof c === 'object' && c !== null && key(c.k) && isUuid(c.id) && c.s === sort && c.o === order
  }, 'is not a cursor this API issued for this sort')
}

type FilterName = 'q' | 'q_phone' | 'status' | 'is_active' | 'user_type' | 'auth_type' | 'country' | 'language' | 'group_id' | 'group_codename'

/** A filter's values, by placeholder name, and which filters a request uses (in this order). */
interface FilterValues { names: FilterName[], params: Record<string, unknown> }

/**
 * The filters a request asks for, as values only: the SQL of each combination is
 * built once (below) with placeholders, and the values are bound per request.
 */
function filterValues (options: UserListOptions): FilterValues {
  const names: FilterName[] = []
  const params: Record<string, unknown> = {}
  if (options.q) {
    const term = options.q.trim()
    params.pattern = containsPattern(term)
    // Phone numbers are stored as E.164: "+1 (415) 555" should find +1415555....
    const digits = term.replace(/[\s().-]/g, '')
    if (/^\+?\d{3,}$/.test(digits) && digits !== term) {
      params.digits = containsPattern(digits)
      names.push('q_phone')
    } else {
      names.push('q')
    }
  }
  if (options.status) { names.push('status'); params.status = options.status }
  if (options.is_active !== undefined) { names.push('is_active'); params.is_active = options.is_active }
  if (options.user_type) { names.push('user_type'); params.user_type = options.user_type }
  if (options.auth_type) { names.push('auth_type'); params.auth_type = options.auth_type }
  if (options.country) { names.push('country'); params.country = options.country.toUpperCase() }
  if (options.language) { names.push('language'); params.language = options.language }
  if (options.group) {
    const byId = UUID.test(options.group)
    names.push(byId ? 'group_id' : 'group_codename')
    params.group = byId ? options.group.toLowerCase() : options.group
  }
  return { names, params }
}

export default fp(async (fastify) => {
  const { db } = fastify
  const bind = (name: string) => sql.placeholder(name)

  function filterSql (name: FilterName): SQL {
    switch (name) {
      case 'q':
      case 'q_phone': {
        const pattern = bind('pattern')
        const matches = [
          ilike(user.email, pattern),
          ilike(user.first_name, pattern),
          ilike(user.last_name, pattern),
          ilike(user.user_name, pattern),
          ilike(user.phone_number, pattern),
          sql`(coalesce(${user.first_name}, '') || ' ' || coalesce(${user.last_name}, '')) ilike ${pattern}`
        ]
        if (name === 'q_phone') matches.push(ilike(user.phone_number, bind('digits')))
        return or(...matches)!
      }
      case 'group_id':
      case 'group_codename':
        return inArray(user.user_id, db.select({ id: userGroup.user_id }).from(userGroup)
          .innerJoin(group, eq(group.group_id, userGroup.group_id))
          .where(name === 'group_id' ? eq(group.group_id, bind('group')) : eq(group.codename, bind('group'))))
      default:
        return eq(user[name], bind(name))
    }
  }

  const whereOf = (names: FilterName[]) => names.length > 0 ? and(...names.map(filterSql)) : undefined

  /**
   * The page and count queries of each combination of filters, sort and
   * pagination, built and prepared on first use, so drizzle does not build their
   * SQL per request (docs/performance.md).
   */
  const pageQuery = statementCache<ReturnType<typeof preparePage>>()
  const countQuery = statementCache<ReturnType<typeof prepareCount>>()

  function preparePage (names: FilterName[], sort: UserSort, order: 'asc' | 'desc', withCursor: boolean, id: number) {
    const key = sortKeys[sort]
    const where = whereOf(names)
    let pageWhere = where
    if (withCursor) {
      const after = order === 'asc'
        ? sql`(${key.expr}, ${user.user_id}) > (${key.cast(bind('cursor_key'))}, ${bind('cursor_id')}::uuid)`
        : sql`(${key.expr}, ${user.user_id}) < (${key.cast(bind('cursor_key'))}, ${bind('cursor_id')}::uuid)`
      pageWhere = where ? and(where, after) : after
    }
    const direction = order === 'asc' ? asc : desc
    return db.select({ ...getTableColumns(user), sort_key: sql<string>`(${key.expr})::text` })
      .from(user)
      .where(pageWhere)
      .orderBy(direction(key.expr), direction(user.user_id))
      .limit(bind('limit'))
      .offset(bind('offset'))
      .prepare(`user_list_page_${id}`)
  }

  function prepareCount (names: FilterName[], id: number) {
    return db.select({ total: count() }).from(user).where(whereOf(names)).prepare(`user_list_count_${id}`)
  }

  const directory: UserDirectory = {
    async list (options) {
      const sort = options.sort ?? 'created_at'
      const order = options.order ?? 'desc'
      const cursor = options.cursor ? decodeCursor(options.cursor, sort, order) : undefined
      const { names, params } = filterValues(options)
      const filtersKey = names.join(',')
      const pageKey = `${filtersKey}|${sort}|${order}|${cursor ? 'cursor' : 'offset'}`
      const page = pageQuery(pageKey, (n) => preparePage(names, sort, order, cursor !== undefined, n))
      const counter = countQuery(filtersKey, (n) => prepareCount(names, n))

      const pageParams = cursor
        ? { ...params, limit: options.limit + 1, offset: 0, cursor_key: cursor.k, cursor_id: cursor.id }
        : { ...params, limit: options.limit + 1, offset: options.offset ?? 0 }
      const [rows, [{ total }]] = await Promise.all([page.execute(pageParams), counter.execute(params)])
      const items = rows.slice(0, options.limit)
      const last = items[items.length - 1]
      return {
        items: items.map(({ sort_key: _key, ...row }) => toPublicUser(row as User)),
        total,
        nextCursor: rows.length > options.limit && last ? encodeCursor({ k: last.sort_key, id: last.user_id, s: sort, o: order }) : null
      }
    }
  }
  fastify.decorate('userDirectory', directory)
}, { name: 'user-directory', dependencies: ['db'] })
