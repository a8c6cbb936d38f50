import t from 'tap'
import { eq } from 'drizzle-orm'
import { build } from '../helpers/build.ts'
import { allPermissionCodenames } from '../../db/defaults.ts'
import { group, permission } from '../../db/schema/index.ts'
import { actor, audits, call, fastEnv, groupId, groupWith, userRow } from './helpers.ts'

const app = await build(t, fastEnv)
const root = await actor(app, { groups: ['super_admin'] })

t.test('permissions: list by codename with cursor and offset pagination, search and category filter', async (t) => {
  const first = await call(app, 'GET', '/permissions?limit=5', root)
  t.equal(first.statusCode, 200)
  const total = first.json().meta.pagination.total
  t.ok(total >= allPermissionCodenames.length)
  const seen: string[] = []
  let cursor: string | null = null
  let pages = 0
  do {
    const res = await call(app, 'GET', `/permissions?limit=5${cursor ? `&cursor=${cursor}` : ''}`, root)
    t.equal(res.statusCode, 200)
    seen.push(...res.json().data.map((p: { codename: string }) => p.codename))
    cursor = res.json().meta.pagination.next_cursor
    pages++
  } while (cursor && pages < 50)
  t.equal(seen.length, total, 'the cursor walks every permission once')
  t.same(seen, [...seen].sort(), 'sorted by codename')
  t.equal(new Set(seen).size, seen.length, 'no duplicates')
  const third = await call(app, 'GET', '/permissions?limit=5&offset=10', root)
  t.same(third.json().data.map((p: { codename: string }) => p.codename), seen.slice(10, 15), 'offset pages agree')
  t.equal((await call(app, 'GET', '/permissions?cursor=bogus', root)).statusCode, 400)
  t.equal((await call(app, 'GET', '/permissions?limit=101', root)).statusCode, 400)

  const search = await call(app, 'GET', '/permissions?q=GROUP', root)
  t.same(search.json().data.map((p: { codename: string }) => p.codename).sort(), ['add_group', 'assign_groups', 'delete_group', 'edit_group', 'view_group', 'view_user'], 'codename, name and description, case-insensitively')
  t.equal((await call(app, 'GET', `/permissions?q=${encodeURIComponent('%')}`, root)).json().data.length, 0, 'a % in the search is a literal percent sign')
  const category = await call(app, 'GET', '/permissions?category=upload', root)
  t.same(category.json().data.map((p: { codename: string }) => p.codename), ['add_upload', 'delete_upload'])
  t.ok(category.json().data.every((p: { is_default: boolean }) => p.is_default))
})

t.test('permissions: create, read, rename, delete; built-in ones are protected; holders lose a deleted one at once', async (t) => {
  const created = await call(app, 'POST', '/permissions', root, { codename: 'export_reports', name: 'Export reports', category: 'reports', description: 'CSV exports' })
  t.equal(created.statusCode, 201, created.body)
  const perm = created.json().data
  t.match(perm, { codename: 'export_reports', is_default: false })
  t.equal((await call(app, 'POST', '/permissions', root, { codename: 'export_reports', name: 'Again', category: 'reports' })).json().error.code, 'CONFLICT')
  t.equal((await call(app, 'POST', '/permissions', root, { codename: 'Bad Name', name: 'x', category: 'x' })).statusCode, 400)
  t.equal((await call(app, 'POST', '/permissions', root, { codename: 'x_y', name: 'x', category: 'x', is_default: true })).statusCode, 400)

  t.equal((await call(app, 'GET', `/permissions/${perm.permission_id}`, root)).json().data.name, 'Export reports')
  const renamed = await call(app, 'PUT', `/permissions/${perm.permission_id}`, root, { name: 'Export all reports' })
  t.equal(renamed.json().data.name, 'Export all reports')
  t.equal((await call(app, 'PUT', `/permissions/${perm.permission_id}`, root, { codename: 'other' })).statusCode, 400, 'the codename never changes')
  t.equal((await call(app, 'GET', '/permissions/00000000-0000-4000-8000-000000000000', root)).json().error.code, 'PERMISSION_NOT_FOUND')
  t.equal((await call(app, 'GET', '/permissions/nope', root)).statusCode, 400)

  const [builtIn] = await app.db.select().from(permission).where(eq(permission.codename, 'view_user'))
  const protectedDelete = await call(app, 'DELETE', `/permissions/${builtIn.permission_id}`, root)
  t.equal(protectedDelete.statusCode, 403)
  t.equal(protectedDelete.json().error.code, 'PERMISSION_PROTECTED')

  await groupWith(app, 'reporters', ['view_profile', 'export_reports'])
  const holder = await actor(app, { groups: ['reporters'] })
  const pv = (await userRow(app, holder.id)).permission_version
  t.ok((await call(app, 'GET', '/users/me/permissions', holder.session)).json().data.permissions.some((p: { codename: string }) => p.codename === 'export_reports'))
  const removed = await call(app, 'DELETE', `/permissions/${perm.permission_id}`, root)
  t.equal(removed.statusCode, 200)
  t.equal(removed.json().data.affected_users, 1)
  t.ok((await userRow(app, holder.id)).permission_version > pv, 'the holder\'s permission version was bumped')
  t.notOk((await call(app, 'GET', '/users/me/permissions', holder.session)).json().data.permissions.some((p: { codename: string }) => p.codename === 'export_reports'))
  t.equal((await call(app, 'GET', `/permissions/${perm.permission_id}`, root)).statusCode, 404)

  for (const action of ['permission_create', 'permission_update', 'permission_delete']) {
    const rows = (await audits(app, action)).filter((a) => (a.metadata as { codename?: string }).codename === 'export_reports')
    t.ok(rows.length > 0, `${action} audited`)
    t.equal(rows[0].user_id, root.id)
  }
})

t.test('groups: CRUD with permissions and member counts; is_system is never client-settable', async (t) => {
  const list = await call(app, 'GET', '/groups?limit=100', root)
  t.equal(list.statusCode, 200)
  const user = list.json().data.find((g: { codename: string }) => g.codename === 'user')
  t.match(user, { is_system: true, is_active: true })
  t.same(user.permissions, ['add_upload', 'edit_profile', 'view_profile'])
  t.ok(user.member_count >= 0)
  t.same((await call(app, 'GET', '/groups?is_system=false', root)).json().data.filter((g: { is_system: boolean }) => g.is_system), [])

  const viewUserId = (await app.db.select().from(permission).where(eq(permission.codename, 'view_user')))[0].permission_id
  const created = await call(app, 'POST', '/groups', root, { codename: 'support', name: 'Support', description: 'Helpdesk', permissions: ['view_profile', viewUserId] })
  t.equal(created.statusCode, 201, created.body)
  t.match(created.json().data, { codename: 'support', is_system: false, is_active: true, permissions: ['view_profile', 'view_user'], member_count: 0 })
  const id = created.json().data.group_id
  t.equal((await call(app, 'POST', '/groups', root, { codename: 'sneaky', name: 'Sneaky', is_system: true })).statusCode, 400, 'is_system in a create body is refused')
  t.equal((await call(app, 'PUT', `/groups/${id}`, root, { is_system: true })).statusCode, 400, 'and in an update body')
  t.equal((await app.db.select().from(group).where(eq(group.group_id, id)))[0].is_system, false)
  t.equal((await call(app, 'POST', '/groups', root, { codename: 'support', name: 'Other' })).json().error.code, 'CONFLICT')
  t.equal((await call(app, 'POST', '/groups', root, { codename: 'ghosts', name: 'Ghosts', permissions: ['no_such_permission'] })).json().error.code, 'PERMISSION_NOT_FOUND')

  const updated = await call(app, 'PUT', `/groups/${id}`, root, { name: 'Support team', description: null })
  t.match(updated.json().data, { name: 'Support team', description: null })
  t.equal((await call(app, 'GET', `/groups/${id}`, root)).json().data.name, 'Support team')
  t.equal((await call(app, 'GET', '/groups/00000000-0000-4000-8000-000000000000', root)).json().error.code, 'GROUP_NOT_FOUND')

  const deleted = await call(app, 'DELETE', `/groups/${id}`, root)
  t.equal(deleted.statusCode, 200)
  t.equal((await call(app, 'GET', `/groups/${id}`, root)).statusCode, 404)
  for (const action of ['group_create', 'group_update', 'group_delete']) t.ok((await audits(app, action)).some((a) => (a.metadata as { group_id?: string }).group_id === id), `${action} audited`)
})

t.test('system groups: never deleted, codename and activity fixed, and only super admins change them', async (t) => {
  const userGroupId = await groupId(app, 'user')
  const del = await call(app, 'DELETE', `/groups/${userGroupId}`, root)
  t.equal(del.statusCode, 403)
  t.equal(del.json().error.code, 'SYSTEM_GROUP_PROTECTED')
  t.equal((await call(app, 'PUT', `/groups/${userGroupId}`, root, { codename: 'users' })).json().error.code, 'SYSTEM_GROUP_PROTECTED')
  t.equal((await call(app, 'PUT', `/groups/${userGroupId}`, root, { is_active: false })).json().error.code, 'SYSTEM_GROUP_PROTECTED')
  const renamed = await call(app, 'PUT', `/groups/${userGroupId}`, root, { name: 'Members', description: 'Everyone' })
  t.equal(renamed.statusCode, 200, 'a super admin may rename one')
  t.equal(renamed.json().data.codename, 'user')
})

t.test('SR-22: group permission and activity changes apply on the next request, session tokens included', async (t) => {
  const g = await groupWith(app, 'auditors', ['view_profile'])
  const member = await actor(app, { groups: ['auditors'] })
  const pv = (await userRow(app, member.id)).permission_version
  t.equal((await call(app, 'GET', '/groups', member.session)).statusCode, 403)

  const set = await call(app, 'POST', `/groups/${g.group_id}/permissions`, root, { permissions: ['view_profile', 'view_group'] })
  t.equal(set.statusCode, 200, set.body)
  t.same(set.json().data.permissions, ['view_group', 'view_profile'])
  t.ok((await userRow(app, member.id)).permission_version > pv, 'members\' permission version bumped')
  t.equal((await call(app, 'GET', '/groups', member.session)).statusCode, 200, 'the old session token sees the grant')
  const [row] = (await audits(app, 'group_permissions_set')).filter((a) => (a.metadata as { group_id?: string }).group_id === g.group_id)
  t.same((row.metadata as { added: string[] }).added, ['view_group'])

  t.equal((await call(app, 'PUT', `/groups/${g.group_id}`, root, { is_active: false })).statusCode, 200)
  t.equal((await call(app, 'GET', '/groups', member.session)).statusCode, 403, 'an inactive group grants nothing')
  t.equal((await call(app, 'PUT', `/groups/${g.group_id}`, root, { is_active: true })).statusCode, 200)
  t.equal((await call(app, 'GET', '/groups', member.access)).statusCode, 200)

  t.equal((await call(app, 'POST', `/groups/${g.group_id}/permissions`, root, { permissions: ['view_profile'] })).statusCode, 200)
  t.equal((await call(app, 'GET', '/groups', member.session)).statusCode, 403, 'a removed permission is gone on the next request')

  t.equal((await call(app, 'DELETE', `/groups/${g.group_id}`, root)).statusCode, 200)
  t.equal((await call(app, 'GET', '/settings/profile', member.session)).statusCode, 403, 'deleting the group took view_profile away')
})
