import fp from 'fastify-plugin'
import type { Static } from '@sinclair/typebox'
import type { Database } from '../../../db/client.ts'
import { AppError } from '../../../schemas/errors.ts'
import type { MembershipSchema, UserPermissionsSchema } from '../../../schemas/admin.ts'
import type { Caller } from '../auth/caller.ts'
import { assertMayChangeMembership, membershipChange, requireActor, touchesSuperAdmin, type MembershipAction } from './rules.ts'

/**
 * Users' groups and the permissions they grant (P/users/{id}/groups,
 * P/users/{id}/permissions), under the escalation rules of SR-27 (rules.ts). A
 * change writes an audit row and, after its transaction commits, bumps the
 * user's permission version (SR-22).
 */
export type MembershipView = Static<typeof MembershipSchema>
export type UserPermissionsView = Static<typeof UserPermissionsSchema>

export interface MembershipService {
  groupsOf: (userId: string) => Promise<MembershipView[]>
  permissionsOf: (userId: string) => Promise<UserPermissionsView>
  /** Sets, adds or removes a user's groups (`refs`: ids or codenames); the user's groups afterwards. */
  change: (caller: Caller, userId: string, refs: string[], action: MembershipAction) => Promise<MembershipView[]>
}

declare module 'fastify' {
  interface FastifyInstance { memberships: MembershipService }
}

export default fp(async (fastify) => {
  const { db, users, groupRepository: groups } = fastify

  /** The account, unless it is unknown or anonymised (deleted): gone for every purpose of the API. */
  async function existingUser (userId: string) {
    const row = await users.findById(userId)
    if (!row || row.status === 'deleted') throw new AppError('USER_NOT_FOUND')
    return row
  }

  async function views (userId: string, exec: Database = db): Promise<MembershipView[]> {
    const rows = await groups.membershipsOf(userId, exec)
    return rows.map(({ group: g, assignedAt }) => ({
      group_id: g.group_id, codename: g.codename, name: g.name, is_system: g.is_system, is_active: g.is_active, assigned_at: assignedAt.toISOString()
    }))
  }

  const service: MembershipService = {
    async groupsOf (userId) {
      await existingUser(userId)
      return views(userId)
    },

    async permissionsOf (userId) {
      const account = await existingUser(userId)
      const byCodename = new Map<string, UserPermissionsView['permissions'][number]>()
      for (const { permission: p, groupCodename } of await groups.grantsOf(userId)) {
        const entry = byCodename.get(p.codename) ?? { codename: p.codename, name: p.name, category: p.category, granted_by: [] }
        entry.granted_by.push(groupCodename)
        byCodename.set(p.codename, entry)
      }
      const active = account.is_active && account.status === 'active'
      return { user_id: userId, is_super_admin: active && await groups.isSuperAdminMember(userId), permissions: [...byCodename.values()] }
    },

    async change (caller, userId, refs, action) {
      const actor = requireActor(caller)
      const outcome = await db.transaction(async (tx) => {
        const guard = await groups.lockSuperAdmins(tx)
        const target = await users.lock(tx, userId)
        if (!target || target.status === 'deleted') throw new AppError('USER_NOT_FOUND')
        const named = await groups.resolve(refs, tx)
        const current = (await groups.membershipsOf(userId, tx)).map((m) => m.group)
        const { added, removed } = membershipChange(current, named, action)
        const granted = await groups.permissionsOf(added.map((g) => g.group_id), tx)
        assertMayChangeMembership(actor, added, removed, new Map([...granted].map(([id, perms]) => [id, perms.map((p) => p.codename)])))
        if (touchesSuperAdmin(removed)) await guard.assertOneRemains([userId])
        await groups.changeMemberships(userId, { add: added.map((g) => g.group_id), remove: removed.map((g) => g.group_id) }, tx)
        return { added, removed }
      })
      if (outcome.added.length + outcome.removed.length > 0) await fastify.sessions.permissionsChanged([userId])
      await fastify.audit(caller, {
        action: 'user_groups_change',
        module: 'rbac',
        targetUserId: userId,
        level: touchesSuperAdmin([...outcome.added, ...outcome.removed]) ? 'warning' : 'info',
        metadata: { action, added: outcome.added.map((g) => g.codename), removed: outcome.removed.map((g) => g.codename) }
      })
      return views(userId)
    }
  }
  fastify.decorate('memberships', service)
}, { name: 'memberships', dependencies: ['db', 'users', 'group-repository', 'sessions', 'activity'] })
