import { and, count, eq } from 'drizzle-orm'
import t from 'tap'
import { openDatabase, type Database } from '../../db/client.ts'
import { allPermissionCodenames, defaultGroups, defaultPermissions } from '../../db/defaults.ts'
import { migrateDatabase } from '../../db/migrate.ts'
import { seedDatabase } from '../../db/seed.ts'
import { group, groupPermission, permission } from '../../db/schema/index.ts'
import { openTestDatabase, testDatabaseMode } from '../helpers/database.ts'

async function counts (db: Database) {
  const [[p], [g], [gp]] = await Promise.all([
    db.select({ n: count() }).from(permission),
    db.select({ n: count() }).from(group),
    db.select({ n: count() }).from(groupPermission)
  ])
  return { permissions: p.n, groups: g.n, grants: gp.n }
}

async function grantsOf (db: Database, groupCodename: string): Promise<string[]> {
  const rows = await db.select({ codename: permission.codename })
    .from(groupPermission)
    .innerJoin(group, eq(group.group_id, groupPermission.group_id))
    .innerJoin(permission, eq(permission.permission_id, groupPermission.permission_id))
    .where(eq(group.codename, groupCodename))
  return rows.map((r) => r.codename).sort()
}

async function setGrant (db: Database, groupCodename: string, permissionCodename: string, granted: boolean) {
  const [g] = await db.select().from(group).where(eq(group.codename, groupCodename))
  const [p] = await db.select().from(permission).where(eq(permission.codename, permissionCodename))
  if (granted) await db.insert(groupPermission).values({ group_id: g.group_id, permission_id: p.permission_id })
  else await db.delete(groupPermission).where(and(eq(groupPermission.group_id, g.group_id), eq(groupPermission.permission_id, p.permission_id)))
}

t.test('the template holds exactly the default data, and seeding again changes nothing', async (t) => {
  const { db } = await openTestDatabase(t)
  const expectedGrants = defaultGroups.reduce((sum, g) => sum + g.permissions.length, 0)
  const before = await counts(db)
  t.same(before, { permissions: defaultPermissions.length, groups: defaultGroups.length, grants: expectedGrants })
  const groups = await db.select().from(group)
  t.ok(groups.every((g) => g.is_system && g.is_active), 'all default groups are active system groups')
  for (const g of defaultGroups) t.same(await grantsOf(db, g.codename), [...g.permissions].sort(), `${g.codename} has its default permissions`)

  const all = (await db.select({ codename: permission.codename }).from(permission)).map((r) => r.codename).sort()
  t.same(all, [...allPermissionCodenames].sort())
  t.same(await grantsOf(db, 'super_admin'), all, 'super_admin has every permission')
  const admin = await grantsOf(db, 'admin')
  t.same(all.filter((c) => !admin.includes(c)).sort(), ['add_permission', 'delete_permission', 'edit_permission', 'test_sentry'],
    'admin has all but permission editing and test_sentry')
  t.same(await grantsOf(db, 'user'), ['add_upload', 'edit_profile', 'view_profile'])

  t.same(await seedDatabase(db), { permissionsCreated: [], groupsCreated: [], grantsCreated: 0 })
  t.same(await seedDatabase(db), { permissionsCreated: [], groupsCreated: [], grantsCreated: 0 })
  t.same(await counts(db), before, 'same counts after seeding twice')
})

t.test('an administrator\'s changes to a group survive seeding', async (t) => {
  const { db } = await openTestDatabase(t)
  await setGrant(db, 'user', 'add_upload', false)
  await setGrant(db, 'user', 'view_dashboard', true)
  await db.update(permission).set({ name: 'Dashboard access' }).where(eq(permission.codename, 'view_dashboard'))
  await seedDatabase(db)
  t.same(await grantsOf(db, 'user'), ['edit_profile', 'view_dashboard', 'view_profile'])
  const [renamed] = await db.select().from(permission).where(eq(permission.codename, 'view_dashboard'))
  t.equal(renamed.name, 'Dashboard access', 'a renamed permission keeps its name')
})

t.test('a default permission that is missing (new in a release) is created and granted to its default groups only', async (t) => {
  const { db } = await openTestDatabase(t)
  await db.delete(permission).where(eq(permission.codename, 'view_system_health'))
  await setGrant(db, 'developer', 'view_activity_log', false)
  const result = await seedDatabase(db)
  t.same(result.permissionsCreated, ['view_system_health'])
  t.equal(result.grantsCreated, 3)
  for (const codename of ['super_admin', 'admin', 'developer']) t.ok((await grantsOf(db, codename)).includes('view_system_health'), codename)
  t.notOk((await grantsOf(db, 'developer')).includes('view_activity_log'), 'the revoked grant stays revoked')
})

t.test('a missing system group is recreated with its default permissions', async (t) => {
  const { db } = await openTestDatabase(t)
  await db.delete(group).where(eq(group.codename, 'accountant'))
  const result = await seedDatabase(db)
  t.same(result.groupsCreated, ['accountant'])
  t.same(await grantsOf(db, 'accountant'), ['add_upload', 'edit_profile', 'view_dashboard', 'view_profile'])
})

t.test('two instances seeding an empty database at once', { skip: testDatabaseMode !== 'postgres' && 'postgres mode only (PGlite is one process)' }, async (t) => {
  const first = await openTestDatabase(t, { empty: true })
  await migrateDatabase(first)
  const second = await openDatabase({ url: first.testDatabase.url, dataDir: '', poolMax: 2 })
  t.teardown(() => second.close())
  const results = await Promise.all([seedDatabase(first.db), seedDatabase(second.db)])
  t.equal(results[0].groupsCreated.length + results[1].groupsCreated.length, defaultGroups.length, 'each group created once')
  t.same(await counts(first.db), {
    permissions: defaultPermissions.length,
    groups: defaultGroups.length,
    grants: defaultGroups.reduce((sum, g) => sum + g.permissions.length, 0)
  })
})
