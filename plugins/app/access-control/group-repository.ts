import fp from 'fastify-plugin'
import { and, asc, count, eq, inArray, or, sql, type SQL } from 'drizzle-orm'
import type { Database } from '../../../db/client.ts'
import { group, groupPermission, permission, user, userGroup, type Group, type NewGroup, type Permission } from '../../../db/schema/index.ts'
import { SUPER_ADMIN_GROUP } from '../../../db/defaults.ts'
import { AppError } from '../../../schemas/errors.ts'
import { pageByCodename, searchIn, type ListOptions, type ListPage } from './listing.ts'
import { splitRefs, uniqueConflict } from './permission-repository.ts'
import type { SuperAdminGuard } from './rules.ts'

/**
 * The owner of the `group`, `group_permission` and `user_group` tables: groups,
 * the permissions they grant and their members. Writing methods take an
 * optional transaction (`tx`). A taken codename or name is CONFLICT.
 */
export interface GroupFilters { is_active?: boolean, is_system?: boolean, q?: string }

export interface GroupRepository {
  list: (options: ListOptions & GroupFilters) => Promise<ListPage<Group>>
  /** GROUP_NOT_FOUND when there is none; `lock` holds the row for the rest of the transaction. */
  find: (id: string, options?: { tx?: Database, lock?: boolean }) => Promise<Group>
  /** Groups named by id or codename; GROUP_NOT_FOUND lists the missing ones. */
  resolve: (refs: readonly string[], tx?: Database) => Promise<Group[]>
  /** The permissions each group grants, in codename order. */
  permissionsOf: (groupIds: string[], tx?: Database) => Promise<Map<string, Permission[]>>
  memberCounts: (groupIds: string[], tx?: Database) => Promise<Map<string, number>>
  memberIds: (groupId: string, tx?: Database) => Promise<string[]>
  create: (values: NewGroup, permissionIds: string[], tx?: Database) => Promise<Group>
  update: (id: string, values: Partial<NewGroup>, tx?: Database) => Promise<void>
  delete: (id: string, tx?: Database) => Promise<void>
  /** Grants and withdraws permissions of one group. */
  changePermissions: (groupId: string, change: { add: string[], remove: string[] }, tx?: Database) => Promise<void>

  /** The groups of a user with the time each was assigned, in codename order. */
  membershipsOf: (userId: string, tx?: Database) => Promise<Array<{ group: Group, assignedAt: Date }>>
  changeMemberships: (userId: string, change: { add: string[], remove: string[] }, tx?: Database) => Promise<void>
  /** Puts a user in the group of that codename; false when there is no such group. */
  addMemberByCodename: (userId: string, codename: string, tx?: Database) => Promise<boolean>
  removeAllMemberships: (userId: string, tx?: Database) => Promise<void>
  /** Each permission a user holds through an active group, with the codename of that group. */
  grantsOf: (userId: string) => Promise<Array<{ permission: Permission, groupCodename: string }>>
  isSuperAdminMember: (userId: string, tx?: Database) => Promise<boolean>
  /**
   * Locks the super_admin group row for the rest of the transaction (call it before
   * locking any user row): every change that can shrink the set of active super
   * admins takes it first, so two concurrent demotions cannot both see "one other
   * admin is left".
   */
  lockSuperAdmins: (tx: Database) => Promise<SuperAdminGuard>
}

declare module 'fastify' {
  interface FastifyInstance { groupRepository: GroupRepository }
}

const groupConflicts = { group_codename_key: 'codename', group_name_key: 'name' }

export default fp(async (fastify) => {
  const { db } = fastify

  const repository: GroupRepository = {
    list ({ is_active: active, is_system: system, q, ...page }) {
      const filters: SQL[] = []
      if (active !== undefined) filters.push(eq(group.is_active, active))
      if (system !== undefined) filters.push(eq(group.is_system, system))
      if (q) filters.push(searchIn(q, group))
      return pageByCodename<typeof group, Group>(db, group, group.codename, filters, page)
    },

    async find (id, { tx = db, lock = false } = {}) {
      const query = tx.select().from(group).where(eq(group.group_id, id))
      const [row] = lock ? await query.for('update') : await query
      if (!row) throw new AppError('GROUP_NOT_FOUND')
      return row
    },

    async resolve (refs, tx = db) {
      if (refs.length === 0) return []
      const { ids, codenames } = splitRefs(refs)
      const rows = await tx.select().from(group).where(or(
        ids.length > 0 ? inArray(group.group_id, ids) : sql`false`,
        codenames.length > 0 ? inArray(group.codename, codenames) : sql`false`
      ))
      const missing = refs.filter((r) => !rows.some((g) => g.group_id === r.toLowerCase() || g.codename === r))
      if (missing.length > 0) throw new AppError('GROUP_NOT_FOUND', { details: { missing } })
      return rows
    },

    async permissionsOf (groupIds, tx = db) {
      const result = new Map<string, Permission[]>(groupIds.map((id) => [id, []]))
      if (groupIds.length === 0) return result
      const rows = await tx.select({ groupId: groupPermission.group_id, permission })
        .from(groupPermission)
        .innerJoin(permission, eq(permission.permission_id, groupPermission.permission_id))
        .where(inArray(groupPermission.group_id, groupIds))
        .orderBy(asc(permission.codename))
      for (const row of rows) result.get(row.groupId)?.push(row.permission)
      return result
    },

    async memberCounts (groupIds, tx = db) {
      if (groupIds.length === 0) return new Map()
      const rows = await tx.select({ groupId: userGroup.group_id, members: count() }).from(userGroup)
        .where(inArray(userGroup.group_id, groupIds)).groupBy(userGroup.group_id)
      return new Map(rows.map((r) => [r.groupId, r.members]))
    },

    async memberIds (groupId, tx = db) {
      const rows = await tx.select({ id: userGroup.user_id }).from(userGroup).where(eq(userGroup.group_id, groupId))
      return rows.map((r) => r.id)
    },

    async create (values, permissionIds, tx) {
      const insert = async (exec: Database) => {
        const [row] = await exec.insert(group).values(values).returning()
        if (permissionIds.length > 0) {
          await exec.insert(groupPermission).values(permissionIds.map((id) => ({ group_id: row.group_id, permission_id: id, created_at: values.created_at })))
        }
        return row
      }
      try {
        return tx ? await insert(tx) : await db.transaction(insert)
      } catch (error) {
        throw uniqueConflict(error, groupConflicts) ?? error
      }
    },

    async update (id, values, tx = db) {
      try {
        await tx.update(group).set(values).where(eq(group.group_id, id))
      } catch (error) {
        throw uniqueConflict(error, groupConflicts) ?? error
      }
    },

    async delete (id, tx = db) {
      await tx.delete(group).where(eq(group.group_id, id))
    },

    async changePermissions (groupId, { add, remove }, tx = db) {
      if (remove.length > 0) {
        await tx.delete(groupPermission).where(and(eq(groupPermission.group_id, groupId), inArray(groupPermission.permission_id, remove)))
      }
      if (add.length > 0) {
        const at = new Date(fastify.now())
        await tx.insert(groupPermission).values(add.map((id) => ({ group_id: groupId, permission_id: id, created_at: at })))
      }
    },

    async membershipsOf (userId, tx = db) {
      return await tx.select({ group, assignedAt: userGroup.created_at }).from(userGroup)
        .innerJoin(group, eq(group.group_id, userGroup.group_id))
        .where(eq(userGroup.user_id, userId))
        .orderBy(asc(group.codename))
    },

    async changeMemberships (userId, { add, remove }, tx = db) {
      if (remove.length > 0) {
        await tx.delete(userGroup).where(and(eq(userGroup.user_id, userId), inArray(userGroup.group_id, remove)))
      }
      if (add.length > 0) {
        const at = new Date(fastify.now())
        await tx.insert(userGroup).values(add.map((id) => ({ user_id: userId, group_id: id, created_at: at })))
      }
    },

    async addMemberByCodename (userId, codename, tx = db) {
      const [target] = await tx.select({ group_id: group.group_id }).from(group).where(eq(group.codename, codename))
      if (!target) return false
      await tx.insert(userGroup).values({ user_id: userId, group_id: target.group_id, created_at: new Date(fastify.now()) })
      return true
    },

    async removeAllMemberships (userId, tx = db) {
      await tx.delete(userGroup).where(eq(userGroup.user_id, userId))
    },

    async grantsOf (userId) {
      return await db.select({ permission, groupCodename: group.codename })
        .from(userGroup)
        .innerJoin(group, and(eq(group.group_id, userGroup.group_id), eq(group.is_active, true)))
        .innerJoin(groupPermission, eq(groupPermission.group_id, group.group_id))
        .innerJoin(permission, eq(permission.permission_id, groupPermission.permission_id))
        .where(eq(userGroup.user_id, userId))
        .orderBy(asc(permission.codename), asc(group.codename))
    },

    async isSuperAdminMember (userId, tx = db) {
      const rows = await tx.select({ id: group.group_id }).from(userGroup)
        .innerJoin(group, eq(group.group_id, userGroup.group_id))
        .where(and(eq(userGroup.user_id, userId), eq(group.codename, SUPER_ADMIN_GROUP), eq(group.is_active, true)))
      return rows.length > 0
    },

    async lockSuperAdmins (tx) {
      const [superGroup] = await tx.select({ id: group.group_id, active: group.is_active }).from(group)
        .where(eq(group.codename, SUPER_ADMIN_GROUP)).for('update')
      return {
        async assertOneRemains (leaving) {
          if (!superGroup?.active) return
          // Read after taking the lock: under READ COMMITTED this sees every change committed by whoever held it before.
          const admins = await tx.select({ id: user.user_id }).from(userGroup)
            .innerJoin(user, eq(user.user_id, userGroup.user_id))
            .where(and(eq(userGroup.group_id, superGroup.id), eq(user.is_active, true), eq(user.status, 'active')))
          if (admins.length > 0 && admins.every((a) => leaving.includes(a.id))) {
            throw new AppError('LAST_SUPER_ADMIN')
          }
        }
      }
    }
  }
  fastify.decorate('groupRepository', repository)
}, { name: 'group-repository', dependencies: ['db'] })
