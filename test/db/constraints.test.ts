import { randomBytes } from 'node:crypto'
import { count, eq } from 'drizzle-orm'
import t from 'tap'
import type { Database } from '../../db/client.ts'
import { isUniqueViolation, pgError, PG_CHECK_VIOLATION, PG_FOREIGN_KEY_VIOLATION } from '../../db/errors.ts'
import { activityLog, group, groupPermission, media, session, user, userGroup, type NewUser } from '../../db/schema/index.ts'
import { openTestDatabase } from '../helpers/database.ts'

// One database for the file: every test makes its own rows, so they cannot meet.
const { db } = await openTestDatabase(t)

const newUser = async (db: Database, values: Partial<NewUser> = {}) => {
  const [row] = await db.insert(user).values({ email: `u-${randomBytes(4).toString('hex')}@example.com`, ...values }).returning()
  return row
}

const groupId = async (db: Database, codename: string) =>
  (await db.select({ id: group.group_id }).from(group).where(eq(group.codename, codename)))[0].id

async function failure (promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise
  } catch (error) {
    return error
  }
  throw new Error('expected the statement to fail')
}

t.test('a new user gets the documented defaults', async (t) => {
  const row = await newUser(db)
  t.match(row, {
    auth_type: 'email',
    user_type: 'user',
    language: 'en',
    theme: 'system',
    timezone: 'UTC',
    profile_accessibility: 'public',
    is_email_verified: false,
    is_phone_verified: false,
    is_active: true,
    status: 'active',
    permission_version: 0,
    password: null,
    last_login: null
  })
  t.type(row.created_at, Date)
  t.match(row.user_id, /^[0-9a-f-]{36}$/)
})

t.test('emails and user names are unique regardless of case; phone numbers are unique', async (t) => {
  await newUser(db, { email: 'Alice@Example.com', user_name: 'Alice', phone_number: '+14155550100' })

  const email = await failure(newUser(db, { email: 'alice@example.COM' }))
  t.ok(isUniqueViolation(email, 'user_email_lower_key'), 'duplicate email in another case')
  const userName = await failure(newUser(db, { user_name: 'ALICE' }))
  t.ok(isUniqueViolation(userName, 'user_user_name_lower_key'), 'duplicate user name in another case')
  const phone = await failure(newUser(db, { phone_number: '+14155550100' }))
  t.ok(isUniqueViolation(phone, 'user_phone_number_key'), 'duplicate phone number')

  // Several accounts without an email, user name or phone are fine (NULLs are distinct).
  await newUser(db, { email: null })
  await newUser(db, { email: null })
  t.pass('NULL identifiers do not collide')
})

t.test('check constraints reject values outside the allowed sets', async (t) => {
  const cases: Array<[string, Partial<NewUser>]> = [
    ['user_status_check', { status: 'gone' as NewUser['status'] }],
    ['user_auth_type_check', { auth_type: 'fax' as NewUser['auth_type'] }],
    ['user_theme_check', { theme: 'neon' as NewUser['theme'] }],
    ['user_country_check', { country: 'usa' }],
    ['user_phone_number_check', { phone_number: '0155 555' }]
  ]
  for (const [constraint, values] of cases) {
    const error = pgError(await failure(newUser(db, values)))
    t.match(error, { code: PG_CHECK_VIOLATION, constraint }, constraint)
  }
  const owner = await newUser(db)
  const level = pgError(await failure(db.insert(activityLog).values({ level: 'loud' as 'info', action: 'x', module: 'y', user_id: owner.user_id })))
  t.equal(level?.code, PG_CHECK_VIOLATION, 'activity level')
  const method = pgError(await failure(db.insert(session).values({
    user_id: owner.user_id, refresh_secret: 's', auth_method: 'magic' as 'otp', expires_at: new Date(Date.now() + 60_000)
  })))
  t.equal(method?.code, PG_CHECK_VIOLATION, 'session auth method')
})

t.test('deleting a user removes their memberships, sessions and files, and keeps their audit rows without them', async (t) => {
  const victim = await newUser(db)
  const other = await newUser(db)
  await db.insert(userGroup).values([
    { user_id: victim.user_id, group_id: await groupId(db, 'user') },
    { user_id: other.user_id, group_id: await groupId(db, 'user') }
  ])
  await db.insert(session).values({ user_id: victim.user_id, refresh_secret: 's', auth_method: 'password', expires_at: new Date(Date.now() + 60_000) })
  await db.insert(media).values({
    user_id: victim.user_id, storage_driver: 'local', object_key: `k/${randomBytes(4).toString('hex')}`, mime_type: 'image/png', size_bytes: 3_000_000_000, checksum_sha256: 'x'
  })
  const [log] = await db.insert(activityLog).values({ level: 'info', action: 'login', module: 'auth', user_id: victim.user_id, target_user_id: victim.user_id }).returning()

  await db.delete(user).where(eq(user.user_id, victim.user_id))

  const [memberships] = await db.select({ n: count() }).from(userGroup).where(eq(userGroup.user_id, victim.user_id))
  t.equal(memberships.n, 0, 'user_group rows cascade')
  const [others] = await db.select({ n: count() }).from(userGroup).where(eq(userGroup.user_id, other.user_id))
  t.equal(others.n, 1, 'other users keep theirs')
  t.equal((await db.select().from(session).where(eq(session.user_id, victim.user_id))).length, 0, 'sessions cascade')
  t.equal((await db.select().from(media).where(eq(media.user_id, victim.user_id))).length, 0, 'media rows cascade')
  const [kept] = await db.select().from(activityLog).where(eq(activityLog.log_id, log.log_id))
  t.equal(kept.user_id, null, 'activity_log.user_id is set to NULL')
  t.equal(kept.target_user_id, victim.user_id, 'the target id (no foreign key) is history and stays')
})

t.test('deleting a group removes its memberships and grants; foreign keys are enforced', async (t) => {
  const [custom] = await db.insert(group).values({ name: 'Editors', codename: 'editors' }).returning()
  const member = await newUser(db)
  await db.insert(userGroup).values({ user_id: member.user_id, group_id: custom.group_id })
  const [{ permission_id: permissionId }] = await db.select({ permission_id: groupPermission.permission_id }).from(groupPermission).limit(1)
  await db.insert(groupPermission).values({ group_id: custom.group_id, permission_id: permissionId })
  await db.delete(group).where(eq(group.group_id, custom.group_id))
  t.equal((await db.select().from(userGroup).where(eq(userGroup.group_id, custom.group_id))).length, 0)
  t.equal((await db.select().from(groupPermission).where(eq(groupPermission.group_id, custom.group_id))).length, 0)

  const dangling = pgError(await failure(db.insert(userGroup).values({ user_id: member.user_id, group_id: custom.group_id })))
  t.equal(dangling?.code, PG_FOREIGN_KEY_VIOLATION)
  const twice = await failure(db.insert(userGroup).values([
    { user_id: member.user_id, group_id: await groupId(db, 'user') },
    { user_id: member.user_id, group_id: await groupId(db, 'user') }
  ]))
  t.ok(isUniqueViolation(twice), 'a membership exists once')
})

t.test('big sizes, jsonb metadata and dates round-trip with their JavaScript types', async (t) => {
  const owner = await newUser(db, { dob: '1990-02-28' })
  t.equal(owner.dob, '1990-02-28', 'date columns are plain YYYY-MM-DD strings')
  const [file] = await db.insert(media).values({
    user_id: owner.user_id, storage_driver: 'local', object_key: 'a/b', mime_type: 'video/mp4', size_bytes: 5_000_000_000, checksum_sha256: 'x'
  }).returning()
  t.equal(file.size_bytes, 5_000_000_000, 'bigint as number')
  const [log] = await db.insert(activityLog).values({ level: 'info', action: 'a', module: 'm', metadata: { nested: { ok: true }, list: [1, 2] } }).returning()
  t.same(log.metadata, { nested: { ok: true }, list: [1, 2] })
})
