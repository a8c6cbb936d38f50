import fp from 'fastify-plugin'
import { and, asc, count, desc, eq, getTableColumns, ilike, inArray, or, sql, type SQL } from 'drizzle-orm'
import { group, user, userGroup, type AuthType, type User, type UserStatus, type UserType } from '../../db/schema/index.ts'
import { AppError } from '../../schemas/errors.ts'
import { containsPattern, type ListPage } from './rbac.ts'
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
const sortKeys: Record<UserSort, { expr: SQL, cast: (value: string) => SQL }> = {
  created_at: { expr: sql`${user.created_at}`, cast: (v) => sql`${v}::timestamptz` },
  last_login: { expr: sql`coalesce(${user.last_login}, '-infinity'::timestamptz)`, cast: (v) => sql`${v}::timestamptz` },
  email: { expr: sql`coalesce(lower(${user.email}), '')`, cast: (v) => sql`${v}::text` }
}

interface Cursor { k: string, id: string, s: UserSort, o: 'asc' | 'desc' }

const encodeCursor = (cursor: Cursor) => Buffer.from(JSON.stringify(cursor)).toString('base64url')
function decodeCursor (raw: string, sort: UserSort, order: 'asc' | 'desc'): Cursor {
  try {
    const value = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as Partial<Cursor>
    // A cursor belongs to one sort: reusing it under another would skip or repeat rows.
    if (typeof value.k === 'string' && value.k.length <= 400 && typeof value.id === 'string' && UUID.test(value.id) && value.s === sort && value.o === order) {
      return value as Cursor
    }
  } catch {}
  throw new AppError('VALIDATION_ERROR', { details: [{ field: 'querystring/cursor', message: 'is not a cursor this API issued for this sort' }] })
}

export default fp(async (fastify) => {
  const { db } = fastify

  function filtersOf (options: UserListOptions): SQL[] {
    const filters: SQL[] = []
    if (options.q) {
      const term = options.q.trim()
      const pattern = containsPattern(term)
      const matches = [
        ilike(user.email, pattern),
        ilike(user.first_name, pattern),
        ilike(user.last_name, pattern),
        ilike(user.user_name, pattern),
        ilike(user.phone_number, pattern),
        sql`(coalesce(${user.first_name}, '') || ' ' || coalesce(${user.last_name}, '')) ilike ${pattern}`
      ]
      // Phone numbers are stored as E.164: "+1 (415) 555" should find +1415555....
      const digits = term.replace(/[\s().-]/g, '')
      if (/^\+?\d{3,}$/.test(digits) && digits !== term) matches.push(ilike(user.phone_number, containsPattern(digits)))
      filters.push(or(...matches)!)
    }
    if (options.status) filters.push(eq(user.status, options.status))
    if (options.is_active !== undefined) filters.push(eq(user.is_active, options.is_active))
    if (options.user_type) filters.push(eq(user.user_type, options.user_type))
    if (options.auth_type) filters.push(eq(user.auth_type, options.auth_type))
    if (options.country) filters.push(eq(user.country, options.country.toUpperCase()))
    if (options.language) filters.push(eq(user.language, options.language))
    if (options.group) {
      const members = db.select({ id: userGroup.user_id }).from(userGroup)
        .innerJoin(group, eq(group.group_id, userGroup.group_id))
        .where(UUID.test(options.group) ? eq(group.group_id, options.group.toLowerCase()) : eq(group.codename, options.group))
      filters.push(inArray(user.user_id, members))
    }
    return filters
  }

  const directory: UserDirectory = {
    async list (options) {
      const sort = options.sort ?? 'created_at'
      const order = options.order ?? 'desc'
      const key = sortKeys[sort]
      const filters = filtersOf(options)
      const where = filters.length > 0 ? and(...filters) : undefined
      let pageWhere = where
      if (options.cursor) {
        const cursor = decodeCursor(options.cursor, sort, order)
        const after = order === 'asc'
          ? sql`(${key.expr}, ${user.user_id}) > (${key.cast(cursor.k)}, ${cursor.id}::uuid)`
          : sql`(${key.expr}, ${user.user_id}) < (${key.cast(cursor.k)}, ${cursor.id}::uuid)`
        pageWhere = where ? and(where, after) : after
      }
      const direction = order === 'asc' ? asc : desc
      const [rows, [{ total }]] = await Promise.all([
        db.select({ ...getTableColumns(user), sort_key: sql<string>`(${key.expr})::text` })
          .from(user)
          .where(pageWhere)
          .orderBy(direction(key.expr), direction(user.user_id))
          .limit(options.limit + 1)
          .offset(options.cursor ? 0 : options.offset ?? 0),
        db.select({ total: count() }).from(user).where(where)
      ])
      const page = rows.slice(0, options.limit)
      const last = page[page.length - 1]
      return {
        items: page.map(({ sort_key: _key, ...row }) => toPublicUser(row as User)),
        total,
        nextCursor: rows.length > options.limit && last ? encodeCursor({ k: last.sort_key, id: last.user_id, s: sort, o: order }) : null
      }
    }
  }
  fastify.decorate('userDirectory', directory)
}, { name: 'user-directory', dependencies: ['db'] })
