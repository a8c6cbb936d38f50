import fp from 'fastify-plugin'
import type { FastifyRequest } from 'fastify'
import { and, asc, count, eq, gt, ilike, inArray, or, sql, type SQL } from 'drizzle-orm'
import type { Database } from '../../../db/client.ts'
import { group, groupPermission, permission, user, userGroup, type Group, type Permission, type User } from '../../../db/schema/index.ts'
import { allPermissionCodenames, SUPER_ADMIN_GROUP } from '../../../db/defaults.ts'
import { isUniqueViolation } from '../../../db/errors.ts'
import { AppError } from '../../../schemas/errors.ts'
import { decodeCursor as decodeCursorOf, encodeCursor as encodeCursorOf, isText } from '../../../schemas/cursor.ts'
import { hasPermissions, type AuthContext } from '../auth/authenticate.ts'
import { toPublicUser, type PublicUser } from '../accounts/users.ts'

/**
 * Permissions, groups and memberships, and the escalation rules of SR-27:
 * - nobody grants a permission they do not hold: creating a group, adding
 *   permissions to one, (re)activating one and putting a user in one all
 *   require the caller to hold every permission concerned (super admins hold
 *   all of them);
 * - only super admins change system groups (which nobody deletes, renames or
 *   deactivates) and super_admin membership, and only they change the status
 *   of a super admin's account;
 * - the last active super admin cannot be removed, deactivated or deleted: every
 *   change that can shrink that set locks the super_admin group row first, so
 *   two concurrent demotions cannot both see "one other admin is left";
 * - `is_system` is never taken from a client.
 * Every change writes an audit row and, after its transaction commits, bumps the
 * permission version of the users it affects (SR-22), so tokens in flight see it
 * on their next request.
 */

export interface ListPage<T> { items: T[], total: number, nextCursor: string | null }
export interface ListOptions { limit: number, offset?: number, cursor?: string }

export interface PermissionView {
  permission_id: string
  codename: string
  name: string
  category: string
  description: string | null
  is_default: boolean
  created_at: string
  last_updated: string
}

export interface GroupView {
  group_id: string
  codename: string
  name: string
  description: string | null
  is_system: boolean
  is_active: boolean
  require_mfa: boolean
  permissions: string[]
  member_count: number
  created_at: string
  last_updated: string
}

export interface MembershipView {
  group_id: string
  codename: string
  name: string
  is_system: boolean
  is_active: boolean
  assigned_at: string
}

export interface UserPermissionsView {
  user_id: string
  is_super_admin: boolean
  permissions: Array<{ codename: string, name: string, category: string, granted_by: string[] }>
}

export interface PermissionInput { codename: string, name: string, category: string, description?: string | null }
export interface GroupInput { codename: string, name: string, description?: string | null, is_active?: boolean, require_mfa?: boolean, permissions?: string[] }
export interface GroupChanges { codename?: string, name?: string, description?: string | null, is_active?: boolean, require_mfa?: boolean }
export type MembershipAction = 'set' | 'add' | 'remove'

/** Held inside a transaction that may shrink the set of active super admins. */
export interface SuperAdminGuard {
  /** Throws LAST_SUPER_ADMIN when no active super admin would remain once these users stop being one. */
  assertOneRemains: (leavingUserIds: string[]) => Promise<void>
}

export interface RbacService {
  listPermissions: (options: ListOptions & { category?: string, q?: string }) => Promise<ListPage<PermissionView>>
  getPermission: (id: string) => Promise<PermissionView>
  createPermission: (request: FastifyRequest, input: PermissionInput) => Promise<PermissionView>
  updatePermission: (request: FastifyRequest, id: string, changes: Partial<Omit<PermissionInput, 'codename'>>) => Promise<PermissionView>
  deletePermission: (request: FastifyRequest, id: string) => Promise<{ affectedUsers: number }>

  listGroups: (options: ListOptions & { is_active?: boolean, is_system?: boolean, q?: string }) => Promise<ListPage<GroupView>>
  getGroup: (id: string) => Promise<GroupView>
  createGroup: (request: FastifyRequest, input: GroupInput) => Promise<GroupView>
  updateGroup: (request: FastifyRequest, id: string, changes: GroupChanges) => Promise<GroupView>
  deleteGroup: (request: FastifyRequest, id: string) => Promise<{ affectedUsers: number }>
  setGroupPermissions: (request: FastifyRequest, id: string, refs: string[]) => Promise<GroupView>

  userGroups: (userId: string) => Promise<MembershipView[]>
  userPermissions: (userId: string) => Promise<UserPermissionsView>
  changeUserGroups: (request: FastifyRequest, userId: string, refs: string[], action: MembershipAction) => Promise<MembershipView[]>
  setUserActive: (request: FastifyRequest, userId: string, active: boolean, reason?: string) => Promise<PublicUser>
  /** Locks the super_admin group row for the rest of the transaction (call it before locking any user row). */
  lockSuperAdmins: (tx: Database) => Promise<SuperAdminGuard>
}

declare module 'fastify' {
  interface FastifyInstance { rbac: RbacService }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const defaultCodenames = new Set<string>(allPermissionCodenames)

/** `%term%` for ILIKE, with the wildcards of the term escaped (Postgres' default escape is the backslash). */
export const containsPattern = (term: string) => `%${term.replace(/[\\%_]/g, (c) => `\\${c}`)}%`

/** Keyset cursors over a unique codename, opaque to clients. */
const encodeCursor = (value: string) => encodeCursorOf({ after: value })
const decodeCursor = (cursor: string): string =>
  decodeCursorOf(cursor, (value): value is { after: string } => typeof value === 'object' && value !== null && isText((value as { after?: unknown }).after, 64)).after

const iso = (d: Date) => d.toISOString()

const toPermissionView = (row: Permission): PermissionView => ({
  permission_id: row.permission_id,
  codename: row.codename,
  name: row.name,
  category: row.category,
  description: row.description,
  is_default: defaultCodenames.has(row.codename),
  created_at: iso(row.created_at),
  last_updated: iso(row.last_updated)
})

const splitRefs = (refs: readonly string[]) => ({
  ids: refs.filter((r) => UUID.test(r)).map((r) => r.toLowerCase()),
  codenames: refs.filter((r) => !UUID.test(r))
})

/** Who is asking: the permissions they hold decide what they may grant. */
function actorOf (request: FastifyRequest): AuthContext {
  const auth = request.auth
  if (!auth) throw new AppError('AUTH_REQUIRED')
  return auth
}

const uniqueConflict = (error: unknown, fields: Record<string, string>) => {
  for (const [constraint, field] of Object.entries(fields)) {
    if (isUniqueViolation(error, constraint)) return new AppError('CONFLICT', { details: { field, reason: 'taken' }, cause: error })
  }
  return undefined
}

export default fp(async (fastify) => {
  const { db } = fastify
  const now = () => new Date(fastify.now())

  async function resolvePermissions (exec: Database, refs: readonly string[]): Promise<Permission[]> {
    if (refs.length === 0) return []
    const { ids, codenames } = splitRefs(refs)
    const rows = await exec.select().from(permission).where(or(
      ids.length > 0 ? inArray(permission.permission_id, ids) : sql`false`,
      codenames.length > 0 ? inArray(permission.codename, codenames) : sql`false`
    ))
    const missing = refs.filter((r) => !rows.some((p) => p.permission_id === r.toLowerCase() || p.codename === r))
    if (missing.length > 0) throw new AppError('PERMISSION_NOT_FOUND', { details: { missing } })
    return rows
  }

  async function resolveGroups (exec: Database, refs: readonly string[]): Promise<Group[]> {
    if (refs.length === 0) return []
    const { ids, codenames } = splitRefs(refs)
    const rows = await exec.select().from(group).where(or(
      ids.length > 0 ? inArray(group.group_id, ids) : sql`false`,
      codenames.length > 0 ? inArray(group.codename, codenames) : sql`false`
    ))
    const missing = refs.filter((r) => !rows.some((g) => g.group_id === r.toLowerCase() || g.codename === r))
    if (missing.length > 0) throw new AppError('GROUP_NOT_FOUND', { details: { missing } })
    return rows
  }

  async function permissionsOfGroups (exec: Database, groupIds: string[]): Promise<Map<string, Permission[]>> {
    const result = new Map<string, Permission[]>(groupIds.map((id) => [id, []]))
    if (groupIds.length === 0) return result
    const rows = await exec.select({ groupId: groupPermission.group_id, permission })
      .from(groupPermission)
      .innerJoin(permission, eq(permission.permission_id, groupPermission.permission_id))
      .where(inArray(groupPermission.group_id, groupIds))
      .orderBy(asc(permission.codename))
    for (const row of rows) result.get(row.groupId)?.push(row.permission)
    return result
  }

  async function memberIds (exec: Database, groupId: string): Promise<string[]> {
    const rows = await exec.select({ id: userGroup.user_id }).from(userGroup).where(eq(userGroup.group_id, groupId))
    return rows.map((r) => r.id)
  }

  async function groupViews (exec: Database, rows: Group[]): Promise<GroupView[]> {
    const ids = rows.map((g) => g.group_id)
    const [perms, counts] = await Promise.all([
      permissionsOfGroups(exec, ids),
      ids.length === 0
        ? []
        : exec.select({ groupId: userGroup.group_id, members: count() }).from(userGroup).where(inArray(userGroup.group_id, ids)).groupBy(userGroup.group_id)
    ])
    return rows.map((g) => ({
      group_id: g.group_id,
      codename: g.codename,
      name: g.name,
      description: g.description,
      is_system: g.is_system,
      is_active: g.is_active,
      require_mfa: g.require_mfa,
      permissions: (perms.get(g.group_id) ?? []).map((p) => p.codename),
      member_count: counts.find((c) => c.groupId === g.group_id)?.members ?? 0,
      created_at: iso(g.created_at),
      last_updated: iso(g.last_updated)
    }))
  }

  async function findGroup (exec: Database, id: string, lock = false): Promise<Group> {
    const query = exec.select().from(group).where(eq(group.group_id, id))
    const [row] = lock ? await query.for('update') : await query
    if (!row) throw new AppError('GROUP_NOT_FOUND')
    return row
  }

  /** The permissions among `codenames` the caller does not hold; super admins hold all. */
  const notHeld = (auth: AuthContext, codenames: Iterable<string>) => [...new Set(codenames)].filter((c) => !hasPermissions(auth, [c])).sort()

  function assertHolds (auth: AuthContext, codenames: Iterable<string>, details: Record<string, unknown> = {}) {
    const missing = notHeld(auth, codenames)
    if (missing.length > 0) throw new AppError('PRIVILEGE_ESCALATION', { details: { ...details, not_held: missing } })
  }

  async function lockSuperAdmins (tx: Database): Promise<SuperAdminGuard> {
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

  async function lockedUser (tx: Database, userId: string): Promise<User> {
    const [row] = await tx.select().from(user).where(eq(user.user_id, userId)).for('update')
    // An anonymised (deleted) account is gone for every purpose of the API.
    if (!row || row.status === 'deleted') throw new AppError('USER_NOT_FOUND')
    return row
  }

  async function isSuperAdminMember (exec: Database, userId: string) {
    const rows = await exec.select({ id: group.group_id }).from(userGroup)
      .innerJoin(group, eq(group.group_id, userGroup.group_id))
      .where(and(eq(userGroup.user_id, userId), eq(group.codename, SUPER_ADMIN_GROUP), eq(group.is_active, true)))
    return rows.length > 0
  }

  async function existingUser (userId: string) {
    const [row] = await db.select({ is_active: user.is_active, status: user.status }).from(user).where(eq(user.user_id, userId))
    if (!row || row.status === 'deleted') throw new AppError('USER_NOT_FOUND')
    return row
  }

  async function memberships (exec: Database, userId: string): Promise<MembershipView[]> {
    const rows = await exec.select({ group, assignedAt: userGroup.created_at }).from(userGroup)
      .innerJoin(group, eq(group.group_id, userGroup.group_id))
      .where(eq(userGroup.user_id, userId))
      .orderBy(asc(group.codename))
    return rows.map(({ group: g, assignedAt }) => ({
      group_id: g.group_id, codename: g.codename, name: g.name, is_system: g.is_system, is_active: g.is_active, assigned_at: iso(assignedAt)
    }))
  }

  const service: RbacService = {
    lockSuperAdmins,

    async listPermissions ({ limit, offset, cursor, category, q }) {
      const filters: SQL[] = []
      if (category) filters.push(eq(permission.category, category))
      if (q) {
        const pattern = containsPattern(q)
        filters.push(or(ilike(permission.codename, pattern), ilike(permission.name, pattern), ilike(permission.description, pattern))!)
      }
      const where = filters.length > 0 ? and(...filters) : undefined
      const pageWhere = cursor ? and(where, gt(permission.codename, decodeCursor(cursor))) : where
      const [rows, [{ total }]] = await Promise.all([
        db.select().from(permission).where(pageWhere).orderBy(asc(permission.codename)).limit(limit + 1).offset(cursor ? 0 : offset ?? 0),
        db.select({ total: count() }).from(permission).where(where)
      ])
      const items = rows.slice(0, limit)
      return { items: items.map(toPermissionView), total, nextCursor: rows.length > limit ? encodeCursor(items[items.length - 1].codename) : null }
    },

    async getPermission (id) {
      const [row] = await db.select().from(permission).where(eq(permission.permission_id, id))
      if (!row) throw new AppError('PERMISSION_NOT_FOUND')
      return toPermissionView(row)
    },

    async createPermission (request, input) {
      const at = now()
      let row: Permission
      try {
        [row] = await db.insert(permission).values({
          codename: input.codename, name: input.name, category: input.category, description: input.description ?? null, created_at: at, last_updated: at
        }).returning()
      } catch (error) {
        throw uniqueConflict(error, { permission_codename_key: 'codename' }) ?? error
      }
      await fastify.audit(request.caller, { action: 'permission_create', module: 'rbac', metadata: { permission_id: row.permission_id, codename: row.codename } })
      return toPermissionView(row)
    },

    async updatePermission (request, id, changes) {
      const [row] = await db.update(permission).set({ ...changes, last_updated: now() }).where(eq(permission.permission_id, id)).returning()
      if (!row) throw new AppError('PERMISSION_NOT_FOUND')
      await fastify.audit(request.caller, { action: 'permission_update', module: 'rbac', metadata: { permission_id: id, codename: row.codename, fields: Object.keys(changes) } })
      return toPermissionView(row)
    },

    async deletePermission (request, id) {
      const outcome = await db.transaction(async (tx) => {
        const [row] = await tx.select().from(permission).where(eq(permission.permission_id, id)).for('update')
        if (!row) throw new AppError('PERMISSION_NOT_FOUND')
        if (defaultCodenames.has(row.codename)) throw new AppError('PERMISSION_PROTECTED', { details: { codename: row.codename } })
        const holders = await tx.selectDistinct({ id: userGroup.user_id }).from(groupPermission)
          .innerJoin(userGroup, eq(userGroup.group_id, groupPermission.group_id))
          .where(eq(groupPermission.permission_id, id))
        await tx.delete(permission).where(eq(permission.permission_id, id))
        return { row, affected: holders.map((h) => h.id) }
      })
      await fastify.sessions.permissionsChanged(outcome.affected)
      await fastify.audit(request.caller, {
        action: 'permission_delete',
        module: 'rbac',
        level: 'warning',
        metadata: { permission_id: id, codename: outcome.row.codename, affected_users: outcome.affected.length }
      })
      return { affectedUsers: outcome.affected.length }
    },

    async listGroups ({ limit, offset, cursor, is_active: active, is_system: system, q }) {
      const filters: SQL[] = []
      if (active !== undefined) filters.push(eq(group.is_active, active))
      if (system !== undefined) filters.push(eq(group.is_system, system))
      if (q) {
        const pattern = containsPattern(q)
        filters.push(or(ilike(group.codename, pattern), ilike(group.name, pattern), ilike(group.description, pattern))!)
      }
      const where = filters.length > 0 ? and(...filters) : undefined
      const pageWhere = cursor ? and(where, gt(group.codename, decodeCursor(cursor))) : where
      const [rows, [{ total }]] = await Promise.all([
        db.select().from(group).where(pageWhere).orderBy(asc(group.codename)).limit(limit + 1).offset(cursor ? 0 : offset ?? 0),
        db.select({ total: count() }).from(group).where(where)
      ])
      const items = rows.slice(0, limit)
      return { items: await groupViews(db, items), total, nextCursor: rows.length > limit ? encodeCursor(items[items.length - 1].codename) : null }
    },

    async getGroup (id) {
      const [view] = await groupViews(db, [await findGroup(db, id)])
      return view
    },

    async createGroup (request, input) {
      const auth = actorOf(request)
      const granted = await resolvePermissions(db, input.permissions ?? [])
      assertHolds(auth, granted.map((p) => p.codename))
      const at = now()
      let created: Group
      try {
        created = await db.transaction(async (tx) => {
          const [row] = await tx.insert(group).values({
            codename: input.codename,
            name: input.name,
            description: input.description ?? null,
            is_active: input.is_active ?? true,
            require_mfa: input.require_mfa ?? false,
            is_system: false,
            created_at: at,
            last_updated: at
          }).returning()
          if (granted.length > 0) {
            await tx.insert(groupPermission).values(granted.map((p) => ({ group_id: row.group_id, permission_id: p.permission_id, created_at: at })))
          }
          return row
        })
      } catch (error) {
        throw uniqueConflict(error, { group_codename_key: 'codename', group_name_key: 'name' }) ?? error
      }
      await fastify.audit(request.caller, {
        action: 'group_create', module: 'rbac', metadata: { group_id: created.group_id, codename: created.codename, permissions: granted.map((p) => p.codename) }
      })
      return service.getGroup(created.group_id)
    },

    async updateGroup (request, id, changes) {
      const auth = actorOf(request)
      let outcome: { before: Group, affected: string[] }
      try {
        outcome = await db.transaction(async (tx) => {
          const before = await findGroup(tx, id, true)
          if (before.is_system) {
            if (!auth.superAdmin) throw new AppError('SYSTEM_GROUP_PROTECTED')
            if ((changes.codename !== undefined && changes.codename !== before.codename) || changes.is_active === false) {
              throw new AppError('SYSTEM_GROUP_PROTECTED', { details: { reason: 'system groups keep their codename and stay active' } })
            }
          }
          const activating = changes.is_active === true && !before.is_active
          if (activating) {
            // Switching a group back on grants its permissions to every member again.
            const perms = (await permissionsOfGroups(tx, [id])).get(id) ?? []
            assertHolds(auth, perms.map((p) => p.codename), { group: before.codename })
          }
          await tx.update(group).set({ ...changes, last_updated: now() }).where(eq(group.group_id, id))
          const activityChanged = changes.is_active !== undefined && changes.is_active !== before.is_active
          // require_mfa is part of the members' cached state: it applies on their next request.
          const mfaChanged = changes.require_mfa !== undefined && changes.require_mfa !== before.require_mfa
          return { before, affected: activityChanged || mfaChanged ? await memberIds(tx, id) : [] }
        })
      } catch (error) {
        throw uniqueConflict(error, { group_codename_key: 'codename', group_name_key: 'name' }) ?? error
      }
      await fastify.sessions.permissionsChanged(outcome.affected)
      await fastify.audit(request.caller, {
        action: 'group_update',
        module: 'rbac',
        metadata: { group_id: id, codename: outcome.before.codename, fields: Object.keys(changes), ...(changes.is_active !== undefined ? { is_active: changes.is_active } : {}), affected_users: outcome.affected.length }
      })
      return service.getGroup(id)
    },

    async deleteGroup (request, id) {
      const outcome = await db.transaction(async (tx) => {
        const row = await findGroup(tx, id, true)
        if (row.is_system) throw new AppError('SYSTEM_GROUP_PROTECTED', { details: { reason: 'system groups are never deleted' } })
        const affected = await memberIds(tx, id)
        await tx.delete(group).where(eq(group.group_id, id))
        return { row, affected }
      })
      await fastify.sessions.permissionsChanged(outcome.affected)
      await fastify.audit(request.caller, {
        action: 'group_delete',
        module: 'rbac',
        level: 'warning',
        metadata: { group_id: id, codename: outcome.row.codename, affected_users: outcome.affected.length }
      })
      return { affectedUsers: outcome.affected.length }
    },

    async setGroupPermissions (request, id, refs) {
      const auth = actorOf(request)
      const outcome = await db.transaction(async (tx) => {
        const row = await findGroup(tx, id, true)
        if (row.is_system && !auth.superAdmin) throw new AppError('SYSTEM_GROUP_PROTECTED')
        const wanted = await resolvePermissions(tx, refs)
        const current = (await permissionsOfGroups(tx, [id])).get(id) ?? []
        const added = wanted.filter((p) => !current.some((c) => c.permission_id === p.permission_id))
        const removed = current.filter((c) => !wanted.some((p) => p.permission_id === c.permission_id))
        assertHolds(auth, added.map((p) => p.codename), { group: row.codename })
        if (removed.length > 0) {
          await tx.delete(groupPermission).where(and(eq(groupPermission.group_id, id), inArray(groupPermission.permission_id, removed.map((p) => p.permission_id))))
        }
        if (added.length > 0) {
          await tx.insert(groupPermission).values(added.map((p) => ({ group_id: id, permission_id: p.permission_id, created_at: now() })))
        }
        const changed = added.length + removed.length > 0
        if (changed) await tx.update(group).set({ last_updated: now() }).where(eq(group.group_id, id))
        return { row, added, removed, affected: changed && row.is_active ? await memberIds(tx, id) : [] }
      })
      await fastify.sessions.permissionsChanged(outcome.affected)
      await fastify.audit(request.caller, {
        action: 'group_permissions_set',
        module: 'rbac',
        metadata: {
          group_id: id,
          codename: outcome.row.codename,
          added: outcome.added.map((p) => p.codename),
          removed: outcome.removed.map((p) => p.codename),
          affected_users: outcome.affected.length
        }
      })
      return service.getGroup(id)
    },

    async userGroups (userId) {
      await existingUser(userId)
      return memberships(db, userId)
    },

    async userPermissions (userId) {
      const account = await existingUser(userId)
      const rows = await db.select({ permission, groupCodename: group.codename })
        .from(userGroup)
        .innerJoin(group, and(eq(group.group_id, userGroup.group_id), eq(group.is_active, true)))
        .innerJoin(groupPermission, eq(groupPermission.group_id, group.group_id))
        .innerJoin(permission, eq(permission.permission_id, groupPermission.permission_id))
        .where(eq(userGroup.user_id, userId))
        .orderBy(asc(permission.codename), asc(group.codename))
      const byCodename = new Map<string, UserPermissionsView['permissions'][number]>()
      for (const { permission: p, groupCodename } of rows) {
        const entry = byCodename.get(p.codename) ?? { codename: p.codename, name: p.name, category: p.category, granted_by: [] }
        entry.granted_by.push(groupCodename)
        byCodename.set(p.codename, entry)
      }
      const active = account.is_active && account.status === 'active'
      return { user_id: userId, is_super_admin: active && await isSuperAdminMember(db, userId), permissions: [...byCodename.values()] }
    },

    async changeUserGroups (request, userId, refs, action) {
      const auth = actorOf(request)
      const outcome = await db.transaction(async (tx) => {
        const guard = await lockSuperAdmins(tx)
        await lockedUser(tx, userId)
        const named = await resolveGroups(tx, refs)
        const current = await tx.select({ group }).from(userGroup).innerJoin(group, eq(group.group_id, userGroup.group_id)).where(eq(userGroup.user_id, userId))
        const currentGroups = current.map((c) => c.group)
        const has = (list: Group[], g: Group) => list.some((x) => x.group_id === g.group_id)
        const desired = action === 'set'
          ? named
          : action === 'add'
            ? [...currentGroups, ...named.filter((g) => !has(currentGroups, g))]
            : currentGroups.filter((g) => !has(named, g))
        const added = desired.filter((g) => !has(currentGroups, g))
        const removed = currentGroups.filter((g) => !has(desired, g))

        const inactive = added.filter((g) => !g.is_active).map((g) => g.codename)
        if (inactive.length > 0) throw new AppError('CONFLICT', { details: { reason: 'group_inactive', groups: inactive } })
        const touchesSuperAdmin = [...added, ...removed].some((g) => g.codename === SUPER_ADMIN_GROUP)
        if (touchesSuperAdmin && !auth.superAdmin) {
          throw new AppError('PRIVILEGE_ESCALATION', { details: { reason: 'only super admins change super_admin membership' } })
        }
        const grantedPerms = await permissionsOfGroups(tx, added.map((g) => g.group_id))
        for (const g of added) assertHolds(auth, (grantedPerms.get(g.group_id) ?? []).map((p) => p.codename), { group: g.codename })
        if (removed.some((g) => g.codename === SUPER_ADMIN_GROUP)) await guard.assertOneRemains([userId])

        if (removed.length > 0) {
          await tx.delete(userGroup).where(and(eq(userGroup.user_id, userId), inArray(userGroup.group_id, removed.map((g) => g.group_id))))
        }
        if (added.length > 0) {
          await tx.insert(userGroup).values(added.map((g) => ({ user_id: userId, group_id: g.group_id, created_at: now() })))
        }
        return { added, removed }
      })
      const changed = outcome.added.length + outcome.removed.length > 0
      if (changed) await fastify.sessions.permissionsChanged([userId])
      await fastify.audit(request.caller, {
        action: 'user_groups_change',
        module: 'rbac',
        targetUserId: userId,
        level: [...outcome.added, ...outcome.removed].some((g) => g.codename === SUPER_ADMIN_GROUP) ? 'warning' : 'info',
        metadata: { action, added: outcome.added.map((g) => g.codename), removed: outcome.removed.map((g) => g.codename) }
      })
      return memberships(db, userId)
    },

    async setUserActive (request, userId, active, reason) {
      const auth = actorOf(request)
      const at = now()
      const row = await db.transaction(async (tx) => {
        const guard = await lockSuperAdmins(tx)
        const target = await lockedUser(tx, userId)
        if (!auth.superAdmin && await isSuperAdminMember(tx, userId)) {
          throw new AppError('PRIVILEGE_ESCALATION', { details: { reason: 'only super admins change the status of a super admin' } })
        }
        if (!active) await guard.assertOneRemains([userId])
        const wasActive = target.is_active && target.status === 'active'
        if (wasActive === active) return target
        const [updated] = await tx.update(user).set(active
          ? { is_active: true, status: 'active', deactivated_at: null, last_updated: at }
          : { is_active: false, status: 'inactive', deactivated_at: at, last_updated: at })
          .where(eq(user.user_id, userId)).returning()
        return updated
      })
      const revoked = active ? 0 : await fastify.sessions.revokeAllForUser(userId, 'deactivated_by_admin')
      await fastify.sessions.refreshUserState(userId)
      await fastify.audit(request.caller, {
        action: active ? 'user_activate' : 'user_deactivate',
        module: 'users',
        targetUserId: userId,
        level: active ? 'info' : 'warning',
        metadata: { revoked_sessions: revoked, ...(reason ? { reason } : {}) }
      })
      return toPublicUser(row)
    }
  }
  fastify.decorate('rbac', service)
}, { name: 'rbac', dependencies: ['db', 'users', 'sessions', 'activity'] })
