import { count, eq } from 'drizzle-orm'
import t from 'tap'
import { createOrPromoteSuperAdmin, ensureBootstrapAdmin, hasActiveSuperAdmin, SuperAdminError } from '../../db/admin.ts'
import { openDatabase, type Database } from '../../db/client.ts'
import { group, user, userGroup } from '../../db/schema/index.ts'
import { verifyPassword } from '../../workers/password.ts'
import { openTestDatabase, testDatabaseMode } from '../helpers/database.ts'

// Cheap Argon2id parameters: these tests are about accounts, not hashing cost.
const hashParams = { memoryCost: 1024, timeCost: 1, parallelism: 1 }
const password = 'a long bootstrap password'

async function superAdminIds (db: Database): Promise<string[]> {
  const rows = await db.select({ id: userGroup.user_id }).from(userGroup)
    .innerJoin(group, eq(group.group_id, userGroup.group_id)).where(eq(group.codename, 'super_admin'))
  return rows.map((r) => r.id)
}

t.test('ensureBootstrapAdmin creates one active super admin, then reports it exists', async (t) => {
  const { db } = await openTestDatabase(t)
  t.notOk(await hasActiveSuperAdmin(db))
  t.equal(await ensureBootstrapAdmin(db, { email: ' Root@Example.com ', password, hashParams }), 'created')
  t.equal(await ensureBootstrapAdmin(db, { email: 'root@example.com', password, hashParams }), 'exists')
  t.equal(await ensureBootstrapAdmin(db, { email: 'someone-else@example.com', password, hashParams }), 'exists', 'any active super admin is enough')
  t.ok(await hasActiveSuperAdmin(db))

  const [admin] = await db.select().from(user).where(eq(user.email, 'root@example.com'))
  t.match(admin, { is_active: true, status: 'active', user_type: 'super_admin', auth_type: 'email', is_email_verified: true })
  t.ok(admin.password?.startsWith('$argon2id$'), 'Argon2id hash')
  t.ok(await verifyPassword(admin.password!, password), 'the password verifies')
  t.same(await superAdminIds(db), [admin.user_id])
  const [users] = await db.select({ n: count() }).from(user)
  t.equal(users.n, 1)

  // An inactive super admin does not count: the bootstrap then creates another.
  await db.update(user).set({ is_active: false, status: 'inactive' }).where(eq(user.email, 'root@example.com'))
  t.notOk(await hasActiveSuperAdmin(db))
  t.equal(await ensureBootstrapAdmin(db, { email: 'second@example.com', password, hashParams }), 'created')
  t.equal((await superAdminIds(db)).length, 2)
})

t.test('ensureBootstrapAdmin promotes an existing account with that email and keeps its password', async (t) => {
  const { db } = await openTestDatabase(t)
  const [existing] = await db.insert(user).values({ email: 'Boss@Example.com', password: 'kept-hash', is_active: false, status: 'inactive' }).returning()
  t.equal(await ensureBootstrapAdmin(db, { email: 'boss@example.com', password, hashParams }), 'promoted')
  const [after] = await db.select().from(user).where(eq(user.user_id, existing.user_id))
  t.match(after, { password: 'kept-hash', is_active: true, status: 'active', user_type: 'super_admin', permission_version: 1 })
  t.same(await superAdminIds(db), [existing.user_id])
  t.equal(await ensureBootstrapAdmin(db, { email: 'boss@example.com', password, hashParams }), 'exists')
})

t.test('createOrPromoteSuperAdmin: created, already, promoted with reactivation, refusals', async (t) => {
  const { db } = await openTestDatabase(t)
  const created = await createOrPromoteSuperAdmin(db, { email: 'a@example.com', password, hashParams })
  t.match(created, { outcome: 'created', reactivated: false })
  t.match(await createOrPromoteSuperAdmin(db, { email: 'A@example.com' }), { outcome: 'already', userId: created.userId })

  const [plain] = await db.insert(user).values({ email: 'b@example.com', is_active: false, status: 'inactive', deactivated_at: new Date() }).returning()
  t.match(await createOrPromoteSuperAdmin(db, { email: 'b@example.com' }), { outcome: 'promoted', userId: plain.user_id, reactivated: true })
  const [b] = await db.select().from(user).where(eq(user.user_id, plain.user_id))
  t.match(b, { is_active: true, status: 'active', deactivated_at: null })

  await db.insert(user).values({ email: 'gone@example.com', status: 'deleted', is_active: false })
  await t.rejects(createOrPromoteSuperAdmin(db, { email: 'gone@example.com' }), new SuperAdminError('ACCOUNT_DELETED', ''), 'deleted accounts are not resurrected')
  await t.rejects(createOrPromoteSuperAdmin(db, { email: 'nobody@example.com' }), { code: 'PASSWORD_REQUIRED' })
})

t.test('several instances bootstrapping at once create one admin', { skip: testDatabaseMode !== 'postgres' && 'postgres mode only (PGlite is one process)' }, async (t) => {
  const first = await openTestDatabase(t)
  const others = await Promise.all([1, 2].map(() => openDatabase({ url: first.testDatabase.url, dataDir: '', poolMax: 2 })))
  t.teardown(() => Promise.all(others.map((h) => h.close())))
  const outcomes = await Promise.all([first, ...others].map((h) => ensureBootstrapAdmin(h.db, { email: 'race@example.com', password, hashParams })))
  t.same(outcomes.sort(), ['created', 'exists', 'exists'])
  const [users] = await first.db.select({ n: count() }).from(user)
  t.equal(users.n, 1)
})
