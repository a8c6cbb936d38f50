import type { Group } from '../../../db/schema/index.ts'
import { SUPER_ADMIN_GROUP } from '../../../db/defaults.ts'
import { AppError } from '../../../schemas/errors.ts'
import { hasPermissions, type AuthContext } from '../auth/authenticate.ts'
import type { Caller } from '../auth/caller.ts'

/**
 * The escalation rules of SR-27, as pure functions the group and permission
 * services apply inside their transactions:
 * - nobody grants a permission they do not hold: creating a group, adding
 *   permissions to one, (re)activating one and putting a user in one all
 *   require the caller to hold every permission concerned (super admins hold
 *   all of them);
 * - only super admins change system groups (which nobody deletes, renames or
 *   deactivates) and super_admin membership, and only they change the status
 *   of a super admin's account;
 * - the last active super admin cannot be removed, deactivated or deleted
 *   (`SuperAdminGuard`, from `groupRepository.lockSuperAdmins`);
 * - `is_system` is never taken from a client.
 * Not a plugin: autoload skips it.
 */

export type MembershipAction = 'set' | 'add' | 'remove'

/** Held inside a transaction that may shrink the set of active super admins. */
export interface SuperAdminGuard {
  /** Throws LAST_SUPER_ADMIN when no active super admin would remain once these users stop being one. */
  assertOneRemains: (leavingUserIds: string[]) => Promise<void>
}

/** Who is asking: the permissions they hold decide what they may grant. */
export function requireActor (caller: Caller): AuthContext {
  if (!caller.actor) throw new AppError('AUTH_REQUIRED')
  return caller.actor
}

/** The permissions among `codenames` the actor does not hold; super admins hold all. */
const notHeld = (actor: AuthContext, codenames: Iterable<string>) => [...new Set(codenames)].filter((c) => !hasPermissions(actor, [c])).sort()

/** PRIVILEGE_ESCALATION unless the actor holds every one of `codenames`. */
export function assertHolds (actor: AuthContext, codenames: Iterable<string>, details: Record<string, unknown> = {}) {
  const missing = notHeld(actor, codenames)
  if (missing.length > 0) throw new AppError('PRIVILEGE_ESCALATION', { details: { ...details, not_held: missing } })
}

/** Only super admins change a system group; nobody renames or deactivates one. */
export function assertMayChangeGroup (actor: AuthContext, before: Group, changes: { codename?: string, is_active?: boolean }) {
  if (!before.is_system) return
  if (!actor.superAdmin) throw new AppError('SYSTEM_GROUP_PROTECTED')
  if ((changes.codename !== undefined && changes.codename !== before.codename) || changes.is_active === false) {
    throw new AppError('SYSTEM_GROUP_PROTECTED', { details: { reason: 'system groups keep their codename and stay active' } })
  }
}

/** The groups a membership change adds and removes, given the user's current groups and the named ones. */
export function membershipChange (current: Group[], named: Group[], action: MembershipAction): { added: Group[], removed: Group[] } {
  const has = (list: Group[], g: Group) => list.some((x) => x.group_id === g.group_id)
  const desired = action === 'set'
    ? named
    : action === 'add'
      ? [...current, ...named.filter((g) => !has(current, g))]
      : current.filter((g) => !has(named, g))
  return { added: desired.filter((g) => !has(current, g)), removed: current.filter((g) => !has(desired, g)) }
}

export const touchesSuperAdmin = (groups: Group[]) => groups.some((g) => g.codename === SUPER_ADMIN_GROUP)

/**
 * A membership change the actor may make: no inactive group is added, only super
 * admins change super_admin membership, and the actor holds every permission the
 * added groups grant (`grantedBy`: the permission codenames of each added group).
 */
export function assertMayChangeMembership (actor: AuthContext, added: Group[], removed: Group[], grantedBy: Map<string, string[]>) {
  const inactive = added.filter((g) => !g.is_active).map((g) => g.codename)
  if (inactive.length > 0) throw new AppError('CONFLICT', { details: { reason: 'group_inactive', groups: inactive } })
  if (touchesSuperAdmin([...added, ...removed]) && !actor.superAdmin) {
    throw new AppError('PRIVILEGE_ESCALATION', { details: { reason: 'only super admins change super_admin membership' } })
  }
  for (const g of added) assertHolds(actor, grantedBy.get(g.group_id) ?? [], { group: g.codename })
}
