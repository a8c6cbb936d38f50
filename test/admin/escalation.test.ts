import t from 'tap'
import { eq } from 'drizzle-orm'
import { build } from '../helpers/build.ts'
import { setActive } from '../helpers/users.ts'
import { group, user, userGroup } from '../../db/schema/index.ts'
import { actor, audits, call, fastEnv, groupId, groupWith, userRow } from './helpers.ts'

const codenames = (res: { json: () => { data: Array<{ codename: string }> } }) => res.json().data.map((g) => g.codename).sort()
const membershipsOf = async (app: Awaited<ReturnType<typeof build>>, userId: string) =>
  (await app.db.select({ codename: group.codename }).from(userGroup).innerJoin(group, eq(group.group_id, userGroup.group_id)).where(eq(userGroup.user_id, userId)))
    .map((r) => r.codename).sort()

t.test('SR-27: nobody grants a permission they do not hold', async (t) => {
  const app = await build(t, fastEnv)
  // The admin group holds everything but add/edit/delete_permission and test_sentry.
  const admin = await actor(app, { groups: ['admin'] })
  const target = await actor(app)

  const tooMuch = await call(app, 'POST', '/groups', admin, { codename: 'crew', name: 'Crew', permissions: ['view_user', 'add_permission'] })
  t.equal(tooMuch.statusCode, 403)
  t.equal(tooMuch.json().error.code, 'PRIVILEGE_ESCALATION')
  t.same(tooMuch.json().error.details.not_held, ['add_permission'])
  t.same(await app.db.select().from(group).where(eq(group.codename, 'crew')), [], 'no group was created')
  const fine = await call(app, 'POST', '/groups', admin, { codename: 'crew', name: 'Crew', permissions: ['view_user'] })
  t.equal(fine.statusCode, 201)
  const crew = fine.json().data.group_id

  const widen = await call(app, 'POST', `/groups/${crew}/permissions`, admin, { permissions: ['view_user', 'test_sentry'] })
  t.equal(widen.json().error.code, 'PRIVILEGE_ESCALATION', 'adding a permission the caller lacks to a group')
  t.same((await call(app, 'GET', `/groups/${crew}`, admin)).json().data.permissions, ['view_user'], 'unchanged')

  // A group granting something the caller lacks cannot be handed out, nor switched back on.
  const strong = await groupWith(app, 'permission_editors', ['edit_permission'])
  const assign = await call(app, 'POST', `/users/${target.id}/groups`, admin, { groups: ['permission_editors'], action: 'add' })
  t.equal(assign.json().error.code, 'PRIVILEGE_ESCALATION')
  const developer = await call(app, 'POST', `/users/${target.id}/groups`, admin, { groups: ['developer'], action: 'add' })
  t.equal(developer.json().error.code, 'PRIVILEGE_ESCALATION', 'a system group granting test_sentry, which admins lack')
  t.same(developer.json().error.details.not_held, ['test_sentry'])
  await app.db.update(group).set({ is_active: false }).where(eq(group.group_id, strong.group_id))
  t.equal((await call(app, 'PUT', `/groups/${strong.group_id}`, admin, { is_active: true })).json().error.code, 'PRIVILEGE_ESCALATION', 'reactivating re-grants')
  t.same(await membershipsOf(app, target.id), ['user'])

  const business = await call(app, 'POST', `/users/${target.id}/groups`, admin, { groups: ['business'], action: 'add' })
  t.equal(business.statusCode, 200, 'a group whose permissions the caller holds is assignable, system or not')
  t.same(codenames(business), ['business', 'user'])

  // Self-service escalation: assign_groups alone does not let you join a stronger group.
  await groupWith(app, 'assigners', ['assign_groups'])
  const assigner = await actor(app, { groups: ['assigners'] })
  t.equal((await call(app, 'POST', `/users/${assigner.id}/groups`, assigner, { groups: ['admin'], action: 'add' })).json().error.code, 'PRIVILEGE_ESCALATION')
  t.same(await membershipsOf(app, assigner.id), ['assigners'])
})

t.test('SR-27: only super admins touch system groups and super_admin membership; any active group is assignable', async (t) => {
  const app = await build(t, fastEnv)
  const root = await actor(app, { groups: ['super_admin'] })
  const admin = await actor(app, { groups: ['admin'] })
  const target = await actor(app)
  const userGroupId = await groupId(app, 'user')
  const superGroupId = await groupId(app, 'super_admin')

  for (const [method, url, body] of [
    ['PUT', `/groups/${userGroupId}`, { name: 'Renamed' }],
    ['POST', `/groups/${userGroupId}/permissions`, { permissions: ['view_profile'] }],
    ['DELETE', `/groups/${userGroupId}`, undefined],
    ['PUT', `/groups/${superGroupId}`, { description: 'mine now' }]
  ] as const) {
    const res = await call(app, method, url, admin, body)
    t.equal(res.statusCode, 403, `${method} ${url}`)
    t.equal(res.json().error.code, 'SYSTEM_GROUP_PROTECTED')
  }
  const [userGroupRow] = await app.db.select().from(group).where(eq(group.group_id, userGroupId))
  t.equal(userGroupRow.name, 'User', 'the system group is unchanged')

  const promote = await call(app, 'POST', `/users/${target.id}/groups`, admin, { groups: ['super_admin'], action: 'add' })
  t.equal(promote.statusCode, 403)
  t.equal(promote.json().error.code, 'PRIVILEGE_ESCALATION')
  const selfPromote = await call(app, 'POST', `/users/${admin.id}/groups`, admin, { groups: ['admin', 'super_admin'] })
  t.equal(selfPromote.statusCode, 403, 'not even for oneself')
  const demote = await call(app, 'POST', `/users/${root.id}/groups`, admin, { groups: ['super_admin'], action: 'remove' })
  t.equal(demote.json().error.code, 'PRIVILEGE_ESCALATION', 'nor remove a super admin')
  const disable = await call(app, 'PUT', `/users/${root.id}/status`, admin, { is_active: false })
  t.equal(disable.json().error.code, 'PRIVILEGE_ESCALATION', 'nor deactivate one')
  t.match(await userRow(app, root.id), { is_active: true })
  t.same(await membershipsOf(app, root.id), ['super_admin'])

  const byRoot = await call(app, 'POST', `/users/${target.id}/groups`, root, { groups: ['super_admin'], action: 'add' })
  t.equal(byRoot.statusCode, 200, 'a super admin can')
  t.equal((await call(app, 'GET', '/users/me/permissions', target.session)).json().data.is_super_admin, true, 'effective at once')
  const [audit] = (await audits(app, 'user_groups_change')).filter((a) => a.target_user_id === target.id)
  t.match(audit, { user_id: root.id, level: 'warning', metadata: { added: ['super_admin'], removed: [] } })

  // Any active group, custom or system, no hard-coded list; inactive ones are refused.
  const custom = await groupWith(app, 'night_shift', [])
  const dormant = await groupWith(app, 'dormant', [], false)
  const set = await call(app, 'POST', `/users/${target.id}/groups`, root, { groups: [custom.group_id, 'accountant', 'super_admin'] })
  t.equal(set.statusCode, 200)
  t.same(codenames(set), ['accountant', 'night_shift', 'super_admin'], 'set replaced user by the listed groups')
  const inactive = await call(app, 'POST', `/users/${target.id}/groups`, root, { groups: ['dormant'], action: 'add' })
  t.equal(inactive.statusCode, 409)
  t.same(inactive.json().error.details.groups, [dormant.codename])
  t.equal((await call(app, 'POST', `/users/${target.id}/groups`, root, { groups: ['nope'], action: 'add' })).json().error.code, 'GROUP_NOT_FOUND')
})

t.test('SR-27: the last active super admin cannot be removed, demoted, deactivated or deleted', async (t) => {
  const app = await build(t, fastEnv)
  const root = await actor(app, { groups: ['super_admin'] })
  const dormant = await actor(app, { groups: ['super_admin'] })
  await setActive(app, dormant.id, false)

  const removeSelf = await call(app, 'POST', `/users/${root.id}/groups`, root, { groups: ['super_admin'], action: 'remove' })
  t.equal(removeSelf.statusCode, 409, 'an inactive super admin does not count as the one left')
  t.equal(removeSelf.json().error.code, 'LAST_SUPER_ADMIN')
  t.equal((await call(app, 'POST', `/users/${root.id}/groups`, root, { groups: ['admin'] })).json().error.code, 'LAST_SUPER_ADMIN', 'nor a set without it')
  t.equal((await call(app, 'PUT', `/users/${root.id}/status`, root, { is_active: false })).json().error.code, 'LAST_SUPER_ADMIN')
  t.equal((await call(app, 'POST', '/settings/deactivate-account', root)).json().error.code, 'LAST_SUPER_ADMIN')
  t.equal((await call(app, 'POST', '/settings/delete-account', root)).json().error.code, 'LAST_SUPER_ADMIN')
  t.match(await userRow(app, root.id), { is_active: true, status: 'active' })
  t.same(await membershipsOf(app, root.id), ['super_admin'])
  t.equal((await call(app, 'GET', '/settings/profile', root)).statusCode, 200, 'still signed in')

  // With a second active super admin, one may step down, and then the other is the last.
  t.equal((await call(app, 'PUT', `/users/${dormant.id}/status`, root, { is_active: true })).statusCode, 200)
  const stepDown = await call(app, 'POST', `/users/${root.id}/groups`, root, { groups: ['super_admin'], action: 'remove' })
  t.equal(stepDown.statusCode, 200, stepDown.body)
  const fresh = await app.sessions.create((await userRow(app, dormant.id)), { ip: '127.0.0.1', method: 'password' })
  t.equal((await call(app, 'PUT', `/users/${dormant.id}/status`, fresh.access_token, { is_active: false })).json().error.code, 'LAST_SUPER_ADMIN')
})

t.test('SR-27: two super admins demoting each other at once: exactly one succeeds', async (t) => {
  const app = await build(t, fastEnv)
  const a = await actor(app, { groups: ['super_admin'] })
  const b = await actor(app, { groups: ['super_admin'] })
  const [ab, ba] = await Promise.all([
    call(app, 'POST', `/users/${b.id}/groups`, a, { groups: ['super_admin'], action: 'remove' }),
    call(app, 'POST', `/users/${a.id}/groups`, b, { groups: ['super_admin'], action: 'remove' })
  ])
  const statuses = [ab.statusCode, ba.statusCode].sort()
  // The loser is refused either because it is no longer a super admin (403/401) or because the other is the last (409).
  t.equal(statuses.filter((s) => s === 200).length, 1, `one demotion wins (${statuses.join(', ')})`)
  const left = await app.db.select({ id: userGroup.user_id }).from(userGroup).where(eq(userGroup.group_id, await groupId(app, 'super_admin')))
  t.equal(left.length, 1, 'one super admin is left')
})

t.test('SR-28: the super admin bypass needs an active account and an active membership, not a user_type', async (t) => {
  const app = await build(t, fastEnv)
  const pretender = await actor(app, { groups: [] })
  await app.db.update(user).set({ user_type: 'super_admin' }).where(eq(user.user_id, pretender.id))
  await app.sessions.refreshUserState(pretender.id)
  t.equal((await call(app, 'GET', '/groups', pretender)).statusCode, 403, 'user_type super_admin grants nothing')
  t.equal((await call(app, 'GET', '/users/me/permissions', pretender)).json().data.is_super_admin, false)

  const root = await actor(app, { groups: ['super_admin'] })
  const other = await actor(app, { groups: ['super_admin'] })
  t.equal((await call(app, 'GET', '/groups', root)).statusCode, 200)
  t.equal((await call(app, 'PUT', `/users/${root.id}/status`, other, { is_active: false })).statusCode, 200)
  t.equal((await call(app, 'GET', '/groups', root.session)).statusCode, 401, 'a deactivated super admin gets nothing')
  t.equal((await call(app, 'GET', `/users/${root.id}/permissions`, other)).json().data.is_super_admin, false)

  // The super_admin group itself switched off (only possible in the database): nobody bypasses any more.
  await app.db.update(group).set({ is_active: false }).where(eq(group.codename, 'super_admin'))
  await app.sessions.permissionsChanged([other.id])
  t.equal((await call(app, 'GET', '/groups', other.session)).statusCode, 403)
})

t.test('every membership change is audited and bumps the user\'s permission version', async (t) => {
  const app = await build(t, fastEnv)
  const root = await actor(app, { groups: ['super_admin'] })
  const target = await actor(app)
  const pv = (await userRow(app, target.id)).permission_version
  t.equal((await call(app, 'GET', '/groups', target.session)).statusCode, 403)
  const res = await call(app, 'POST', `/users/${target.id}/groups`, root, { groups: ['admin'], action: 'add' })
  t.equal(res.statusCode, 200)
  t.equal((await userRow(app, target.id)).permission_version, pv + 1)
  t.equal((await call(app, 'GET', '/groups', target.session)).statusCode, 200, 'SR-22: the old session token sees the new group')
  const removed = await call(app, 'POST', `/users/${target.id}/groups`, root, { groups: ['admin'], action: 'remove' })
  t.same(codenames(removed), ['user'])
  t.equal((await call(app, 'GET', '/groups', target.session)).statusCode, 403, 'and its removal')
  const rows = (await audits(app, 'user_groups_change')).filter((a) => a.target_user_id === target.id)
  t.equal(rows.length, 2)
  t.ok(rows.every((r) => r.user_id === root.id && r.request_id && r.ip_address))
  const noop = await call(app, 'POST', `/users/${target.id}/groups`, root, { groups: ['user'] })
  t.equal(noop.statusCode, 200)
  t.equal((await userRow(app, target.id)).permission_version, pv + 2, 'no change, no bump')
})
