import fp from 'fastify-plugin'
import type { Static } from '@sinclair/typebox'
import type { Database } from '../../../db/client.ts'
import type { Group } from '../../../db/schema/index.ts'
import type { GroupCreateBody, GroupSchema, GroupUpdateBody } from '../../../schemas/admin.ts'
import type { Caller } from '../auth/caller.ts'
import type { GroupFilters } from './group-repository.ts'
import type { ListOptions, ListPage } from './listing.ts'
import { assertHolds, assertMayChangeGroup, requireActor } from './rules.ts'
import { AppError } from '../../../schemas/errors.ts'

/**
 * Groups and the permissions they grant (P/groups), under the escalation rules of
 * SR-27 (rules.ts). Every change writes an audit row and, after its transaction
 * commits, bumps the permission version of the members it affects (SR-22), so
 * tokens in flight see it on their next request.
 */
export type GroupView = Static<typeof GroupSchema>

export interface GroupService {
  list: (options: ListOptions & GroupFilters) => Promise<ListPage<GroupView>>
  get: (id: string) => Promise<GroupView>
  create: (caller: Caller, input: Static<typeof GroupCreateBody>) => Promise<GroupView>
  update: (caller: Caller, id: string, changes: Static<typeof GroupUpdateBody>) => Promise<GroupView>
  remove: (caller: Caller, id: string) => Promise<{ affectedUsers: number }>
  /** Makes `refs` (ids or codenames) the group's complete set of permissions. */
  setPermissions: (caller: Caller, id: string, refs: string[]) => Promise<GroupView>
}

declare module 'fastify' {
  interface FastifyInstance { groupService: GroupService }
}

export default fp(async (fastify) => {
  const { db, groupRepository: groups, permissionRepository: permissions } = fastify
  const now = () => new Date(fastify.now())

  async function views (exec: Database, rows: Group[]): Promise<GroupView[]> {
    const ids = rows.map((g) => g.group_id)
    const [perms, counts] = await Promise.all([groups.permissionsOf(ids, exec), groups.memberCounts(ids, exec)])
    return rows.map((g) => ({
      group_id: g.group_id,
      codename: g.codename,
      name: g.name,
      description: g.description,
      is_system: g.is_system,
      is_active: g.is_active,
      require_mfa: g.require_mfa,
      permissions: (perms.get(g.group_id) ?? []).map((p) => p.codename),
      member_count: counts.get(g.group_id) ?? 0,
      created_at: g.created_at.toISOString(),
      last_updated: g.last_updated.toISOString()
    }))
  }

  const service: GroupService = {
    async list (options) {
      const page = await groups.list(options)
      return { ...page, items: await views(db, page.items) }
    },

    async get (id) {
      const [view] = await views(db, [await groups.find(id)])
      return view
    },

    async create (caller, input) {
      const actor = requireActor(caller)
      const granted = await permissions.resolve(input.permissions ?? [])
      assertHolds(actor, granted.map((p) => p.codename))
      const at = now()
      const created = await groups.create({
        codename: input.codename,
        name: input.name,
        description: input.description ?? null,
        is_active: input.is_active ?? true,
        require_mfa: input.require_mfa ?? false,
        is_system: false,
        created_at: at,
        last_updated: at
      }, granted.map((p) => p.permission_id))
      await fastify.audit(caller, {
        action: 'group_create', module: 'rbac', metadata: { group_id: created.group_id, codename: created.codename, permissions: granted.map((p) => p.codename) }
      })
      return service.get(created.group_id)
    },

    async update (caller, id, changes) {
      const actor = requireActor(caller)
      const outcome = await db.transaction(async (tx) => {
        const before = await groups.find(id, { tx, lock: true })
        assertMayChangeGroup(actor, before, changes)
        if (changes.is_active === true && !before.is_active) {
          // Switching a group back on grants its permissions to every member again.
          const perms = (await groups.permissionsOf([id], tx)).get(id) ?? []
          assertHolds(actor, perms.map((p) => p.codename), { group: before.codename })
        }
        await groups.update(id, { ...changes, last_updated: now() }, tx)
        const activityChanged = changes.is_active !== undefined && changes.is_active !== before.is_active
        // require_mfa is part of the members' cached state: it applies on their next request.
        const mfaChanged = changes.require_mfa !== undefined && changes.require_mfa !== before.require_mfa
        return { before, affected: activityChanged || mfaChanged ? await groups.memberIds(id, tx) : [] }
      })
      await fastify.sessions.permissionsChanged(outcome.affected)
      await fastify.audit(caller, {
        action: 'group_update',
        module: 'rbac',
        metadata: { group_id: id, codename: outcome.before.codename, fields: Object.keys(changes), ...(changes.is_active !== undefined ? { is_active: changes.is_active } : {}), affected_users: outcome.affected.length }
      })
      return service.get(id)
    },

    async remove (caller, id) {
      const outcome = await db.transaction(async (tx) => {
        const row = await groups.find(id, { tx, lock: true })
        if (row.is_system) throw new AppError('SYSTEM_GROUP_PROTECTED', { details: { reason: 'system groups are never deleted' } })
        const affected = await groups.memberIds(id, tx)
        await groups.delete(id, tx)
        return { row, affected }
      })
      await fastify.sessions.permissionsChanged(outcome.affected)
      await fastify.audit(caller, {
        action: 'group_delete',
        module: 'rbac',
        level: 'warning',
        metadata: { group_id: id, codename: outcome.row.codename, affected_users: outcome.affected.length }
      })
      return { affectedUsers: outcome.affected.length }
    },

    async setPermissions (caller, id, refs) {
      const actor = requireActor(caller)
      const outcome = await db.transaction(async (tx) => {
        const row = await groups.find(id, { tx, lock: true })
        if (row.is_system && !actor.superAdmin) throw new AppError('SYSTEM_GROUP_PROTECTED')
        const wanted = await permissions.resolve(refs, tx)
        const current = (await groups.permissionsOf([id], tx)).get(id) ?? []
        const added = wanted.filter((p) => !current.some((c) => c.permission_id === p.permission_id))
        const removed = current.filter((c) => !wanted.some((p) => p.permission_id === c.permission_id))
        assertHolds(actor, added.map((p) => p.codename), { group: row.codename })
        await groups.changePermissions(id, { add: added.map((p) => p.permission_id), remove: removed.map((p) => p.permission_id) }, tx)
        const changed = added.length + removed.length > 0
        if (changed) await groups.update(id, { last_updated: now() }, tx)
        return { row, added, removed, affected: changed && row.is_active ? await groups.memberIds(id, tx) : [] }
      })
      await fastify.sessions.permissionsChanged(outcome.affected)
      await fastify.audit(caller, {
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
      return service.get(id)
    }
  }
  fastify.decorate('groupService', service)
}, { name: 'group-service', dependencies: ['db', 'group-repository', 'permission-repository', 'sessions', 'activity'] })
