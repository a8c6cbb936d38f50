import fp from 'fastify-plugin'
import { eq, inArray, or, sql, type SQL } from 'drizzle-orm'
import type { Database } from '../../../db/client.ts'
import { groupPermission, permission, userGroup, type NewPermission, type Permission } from '../../../db/schema/index.ts'
import { isUniqueViolation } from '../../../db/errors.ts'
import { AppError } from '../../../schemas/errors.ts'
import { pageByCodename, searchIn, type ListOptions, type ListPage } from './listing.ts'

/**
 * The owner of the `permission` table. Writing methods take an optional
 * transaction (`tx`). A taken codename is CONFLICT.
 */
export interface PermissionFilters { category?: string, q?: string }

export interface PermissionRepository {
  list: (options: ListOptions & PermissionFilters) => Promise<ListPage<Permission>>
  find: (id: string, tx?: Database) => Promise<Permission | undefined>
  /** The row locked for the rest of the transaction. */
  lock: (tx: Database, id: string) => Promise<Permission | undefined>
  /** Permissions named by id or codename; PERMISSION_NOT_FOUND lists the missing ones. */
  resolve: (refs: readonly string[], tx?: Database) => Promise<Permission[]>
  /** Users who hold the permission through any group (active or not). */
  holders: (id: string, tx?: Database) => Promise<string[]>
  create: (values: NewPermission, tx?: Database) => Promise<Permission>
  update: (id: string, values: Partial<NewPermission>, tx?: Database) => Promise<Permission | undefined>
  delete: (id: string, tx?: Database) => Promise<void>
}

declare module 'fastify' {
  interface FastifyInstance { permissionRepository: PermissionRepository }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** Refs that are ids (lower-cased) and refs that are codenames. */
export const splitRefs = (refs: readonly string[]) => ({
  ids: refs.filter((r) => UUID.test(r)).map((r) => r.toLowerCase()),
  codenames: refs.filter((r) => !UUID.test(r))
})

/** The CONFLICT of a unique violation on one of `fields` (constraint → field); undefined for any other error. */
export const uniqueConflict = (error: unknown, fields: Record<string, string>) => {
  for (const [constraint, field] of Object.entries(fields)) {
    if (isUniqueViolation(error, constraint)) return new AppError('CONFLICT', { details: { field, reason: 'taken' }, cause: error })
  }
  return undefined
}

export default fp(async (fastify) => {
  const { db } = fastify

  const repository: PermissionRepository = {
    list ({ category, q, ...page }) {
      const filters: SQL[] = []
      if (category) filters.push(eq(permission.category, category))
      if (q) filters.push(searchIn(q, permission))
      return pageByCodename<typeof permission, Permission>(db, permission, permission.codename, filters, page)
    },

    async find (id, tx = db) {
      const [row] = await tx.select().from(permission).where(eq(permission.permission_id, id))
      return row
    },

    async lock (tx, id) {
      const [row] = await tx.select().from(permission).where(eq(permission.permission_id, id)).for('update')
      return row
    },

    async resolve (refs, tx = db) {
      if (refs.length === 0) return []
      const { ids, codenames } = splitRefs(refs)
      const rows = await tx.select().from(permission).where(or(
        ids.length > 0 ? inArray(permission.permission_id, ids) : sql`false`,
        codenames.length > 0 ? inArray(permission.codename, codenames) : sql`false`
      ))
      const missing = refs.filter((r) => !rows.some((p) => p.permission_id === r.toLowerCase() || p.codename === r))
      if (missing.length > 0) throw new AppError('PERMISSION_NOT_FOUND', { details: { missing } })
      return rows
    },

    async holders (id, tx = db) {
      const rows = await tx.selectDistinct({ id: userGroup.user_id }).from(groupPermission)
        .innerJoin(userGroup, eq(userGroup.group_id, groupPermission.group_id))
        .where(eq(groupPermission.permission_id, id))
      return rows.map((r) => r.id)
    },

    async create (values, tx = db) {
      try {
        const [row] = await tx.insert(permission).values(values).returning()
        return row
      } catch (error) {
        throw uniqueConflict(error, { permission_codename_key: 'codename' }) ?? error
      }
    },

    async update (id, values, tx = db) {
      const [row] = await tx.update(permission).set(values).where(eq(permission.permission_id, id)).returning()
      return row
    },

    async delete (id, tx = db) {
      await tx.delete(permission).where(eq(permission.permission_id, id))
    }
  }
  fastify.decorate('permissionRepository', repository)
}, { name: 'permission-repository', dependencies: ['db'] })
