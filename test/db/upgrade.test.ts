import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { drizzle as drizzlePostgres } from 'drizzle-orm/postgres-js'
import { migrate as migratePostgres } from 'drizzle-orm/postgres-js/migrator'
import postgres from 'postgres'
import t from 'tap'
import { buildApp } from '../../app.ts'
import { loadConfig } from '../../config.ts'
import { openDatabase, type DatabaseHandle } from '../../db/client.ts'
import { defaultGroups } from '../../db/defaults.ts'
import { migrateDatabase, resolveMigrationsFolder } from '../../db/migrate.ts'
import { PartialOriginalDatabaseError } from '../../db/upgrade/detect.ts'
import { InjectedUpgradeFailure, upgradeOriginalDatabase, upgradeSteps, type Conflict } from '../../db/upgrade/upgrade.ts'
import { deleteRedisPrefix, testRedisUrl, testSecret } from '../helpers/build.ts'
import { createTestDatabase, testDatabaseMode } from '../helpers/database.ts'

// The original project ran on PostgreSQL only; PGlite (the embedded mode) never
// holds such a database, and the upgrade is only wired for the postgres driver.
const skip = testDatabaseMode !== 'postgres' && 'the original Express/Prisma database only exists on PostgreSQL (TEST_DB=postgres)'

const here = path.dirname(fileURLToPath(import.meta.url))
const root = path.resolve(here, '..', '..')
const fixture = readFileSync(path.join(here, 'fixtures', 'original.sql'), 'utf8')

const id = (prefix: string, n: number) => `${prefix}0000000-0000-4000-8000-${String(n).padStart(12, '0')}`
const users = {
  alice: id('a', 1),
  aliceOld: id('a', 2),
  bob: id('a', 3),
  carol: id('a', 4),
  dave: id('a', 5),
  erin: id('a', 6),
  frank: id('a', 7),
  frank2: id('a', 8),
  grace: id('a', 9),
  heidi: id('a', 10),
  ivan: id('a', 11),
  judy: id('a', 12)
}

/** Every value the fixture must send to quarantine: [row id, column, reason]. */
const expectedConflicts: Array<[string, string, string]> = [
  [users.aliceOld, 'email', 'email_duplicate_ignoring_case'],
  [users.frank2, 'user_name', 'user_name_duplicate_ignoring_case'],
  [users.dave, 'phone_number', 'phone_duplicate'],
  [users.erin, 'phone_number', 'phone_unparseable'],
  [users.heidi, 'phone_number', 'phone_unparseable'],
  [users.erin, 'country', 'country_not_iso'],
  [users.ivan, 'country', 'country_not_iso'],
  [users.dave, 'user_type', 'user_type_unknown'],
  [users.dave, 'theme', 'theme_unknown'],
  [users.erin, 'profile_accessibility', 'profile_accessibility_unknown'],
  [users.erin, 'timezone', 'timezone_unknown'],
  [users.erin, 'auth_type', 'auth_type_unknown'],
  [users.erin, 'status', 'status_unknown'],
  [users.heidi, 'status', 'status_disagrees_with_is_active'],
  [users.ivan, 'status', 'status_missing'],
  [id('f', 5), 'level', 'level_unknown']
]

interface OriginalDatabase { url: string, handle: DatabaseHandle, sql: postgres.Sql }

/** A new scratch database (t_<time>_<hex>, cleaned up like the others) holding the fixture. */
async function originalDatabase (tt: { teardown: (fn: () => unknown) => void }, tweak?: string): Promise<OriginalDatabase> {
  const database = await createTestDatabase({ empty: true })
  const sql = postgres(database.url!, { max: 1, onnotice: () => {} })
  await sql.unsafe(fixture)
  if (tweak) await sql.unsafe(tweak)
  const handle = await openDatabase({ url: database.url, dataDir: '', poolMax: 2 })
  tt.teardown(async () => {
    await handle.close()
    await sql.end({ timeout: 5 })
    await database.drop()
  })
  return { url: database.url!, handle, sql }
}

/**
 * Everything a user of the database could see: schemas, columns, constraints,
 * indexes, and per table its row count and a hash of all its rows.
 */
async function snapshot (sql: postgres.Sql, schemas?: string[]) {
  const inScope = schemas ?? (await sql<Array<{ nspname: string }>>`
    select nspname from pg_namespace where nspname not like 'pg\\_%' and nspname <> 'information_schema' order by 1`).map((r) => r.nspname)
  const columns = await sql`
    select table_schema, table_name, column_name, ordinal_position, data_type, udt_name, is_nullable, column_default, character_maximum_length
    from information_schema.columns where table_schema in ${sql(inScope)} order by 1, 2, 4`
  const constraints = await sql`
    select n.nspname, c.conrelid::regclass::text as rel, c.conname, pg_get_constraintdef(c.oid) as def
    from pg_constraint c join pg_namespace n on n.oid = c.connamespace where n.nspname in ${sql(inScope)} order by 1, 2, 3`
  const indexes = await sql`select schemaname, tablename, indexname, indexdef from pg_indexes where schemaname in ${sql(inScope)} order by 1, 2, 3`
  const tables = await sql<Array<{ schema: string, name: string }>>`
    select n.nspname as schema, c.relname as name from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where c.relkind in ('r', 'p') and n.nspname in ${sql(inScope)} order by 1, 2`
  const rows: Record<string, { n: number, hash: string }> = {}
  for (const table of tables) {
    const [r] = await sql.unsafe<Array<{ n: number, hash: string }>>(
      `select count(*)::int as n, md5(coalesce(string_agg(t::text, E'\\n' order by t::text), '')) as hash from "${table.schema}"."${table.name}" t`)
    rows[`${table.schema}.${table.name}`] = r
  }
  return { schemas: inScope, columns: [...columns], constraints: [...constraints], indexes: [...indexes], rows }
}

/** Permission codenames per user, through the groups that are active. */
async function permissionsPerUser (sql: postgres.Sql): Promise<Record<string, string[]>> {
  const rows = await sql<Array<{ user_id: string, codenames: string[] }>>`
    select u.user_id::text, coalesce(array_agg(distinct p.codename order by p.codename) filter (where p.codename is not null), '{}') as codenames
    from "user" u
    left join user_group ug on ug.user_id = u.user_id
    left join "group" g on g.group_id = ug.group_id and coalesce(g.is_active, true)
    left join group_permission gp on gp.group_id = g.group_id
    left join permission p on p.permission_id = gp.permission_id
    group by u.user_id order by 1`
  return Object.fromEntries(rows.map((r) => [r.user_id, r.codenames]))
}

async function ids (sql: postgres.Sql) {
  const list = async (query: string) => (await sql.unsafe<Array<{ k: string }>>(query)).map((r) => r.k)
  return {
    user: await list('select user_id::text as k from "user" order by 1'),
    group: await list('select group_id::text as k from "group" order by 1'),
    permission: await list('select permission_id::text as k from permission order by 1'),
    group_permission: await list('select group_id || \'/\' || permission_id as k from group_permission order by 1'),
    user_group: await list('select user_id || \'/\' || group_id as k from user_group order by 1'),
    activity_log: await list('select log_id::text as k from activity_log order by 1')
  }
}

const conflictKeys = (conflicts: Array<Pick<Conflict, 'rowId' | 'column' | 'reason'>>) =>
  conflicts.map((c) => `${c.rowId} ${c.column} ${c.reason}`).sort()

t.test('an original database is upgraded in place: ids, links, conversions, quarantine, report', { skip }, async (tt) => {
  const db = await originalDatabase(tt)
  const idsBefore = await ids(db.sql)
  const permissionsBefore = await permissionsPerUser(db.sql)
  const printed: string[] = []
  const { upgrade } = await migrateDatabase(db.handle, { log: (text) => printed.push(text) })
  tt.ok(upgrade, 'recognised by its shape and upgraded')
  const report = upgrade!
  tt.equal(report.dryRun, false)

  tt.same(await ids(db.sql), idsBefore, 'every row keeps its id; every link and membership stays')
  for (const t of report.tables) {
    tt.equal(t.after, t.before, `${t.table}: as many rows after as before`)
    tt.equal(t.before, idsBefore[t.table as keyof typeof idsBefore].length, `${t.table}: the count before is the real one`)
  }
  tt.same(await permissionsPerUser(db.sql), permissionsBefore, 'every user has exactly the permissions they had')

  const expected = conflictKeys(expectedConflicts.map(([rowId, column, reason]) => ({ rowId, column, reason })))
  tt.same(conflictKeys(report.conflicts), expected, 'the report lists each conflict, and only those')
  const quarantined = await db.sql<Array<{ row_id: string, column_name: string, reason: string, original_value: string | null }>>`
    select row_id, column_name, reason, original_value from legacy_upgrade.quarantine`
  tt.same(conflictKeys(quarantined.map((q) => ({ rowId: q.row_id, column: q.column_name, reason: q.reason }))), expected, 'each conflict is in quarantine')
  const original = (rowId: string, column: string) => quarantined.find((q) => q.row_id === rowId && q.column_name === column)?.original_value
  tt.equal(original(users.aliceOld, 'email'), 'alice@example.com', 'with its original value')
  tt.equal(original(users.dave, 'phone_number'), '{"phone": "+971501234568"}')
  tt.equal(original(users.erin, 'country'), 'Narnia')
  tt.equal(original(users.dave, 'user_type'), 'vip')
  const text = printed.join('\n')
  for (const [rowId, column, reason] of expectedConflicts) {
    tt.match(text, `${rowId} ${column} `, `printed: ${reason} of ${rowId}`)
  }
  tt.match(text, /user\s+12 ->\s+12/, 'printed: the counts per table')
  tt.match(text, /"ACTIVE" -> "active"/, 'printed: what was mapped')

  const rows = Object.fromEntries((await db.sql`select *, dob::text as dob from "user"`).map((r) => [r.user_id as string, r]))
  tt.equal(rows[users.alice].phone_number, '+971501234567', 'an SMS number (with +) as E.164')
  tt.equal(rows[users.bob].phone_number, '+971501234568', 'a WhatsApp number (no +) as E.164; kept by the verified account')
  tt.equal(rows[users.frank2].phone_number, '+447911123456', 'formatting removed')
  tt.equal(rows[users.ivan].phone_number, '+14155552671', 'a bare JSON string')
  tt.equal(rows[users.dave].phone_number, null, 'the duplicate lost it')
  tt.equal(rows[users.judy].phone_number, null, 'an empty phone is no phone')
  tt.equal(rows[users.alice].email, 'Alice@Example.com', 'the active, verified, recently seen account keeps the address')
  tt.equal(rows[users.aliceOld].email, null)
  tt.equal(rows[users.aliceOld].user_name, 'alice.old', 'and keeps its other identifiers')
  tt.equal(rows[users.frank].user_name, 'Frank')
  tt.equal(rows[users.frank2].user_name, null)
  tt.same([rows[users.bob].country, rows[users.carol].country, rows[users.dave].country, rows[users.judy].country, rows[users.frank2].country, rows[users.frank].country],
    ['NG', 'NG', 'NG', 'US', 'GB', null], 'countries: names, lower case, spaces, empty')
  tt.same([rows[users.alice].dob, rows[users.judy].dob], ['1990-05-17', '1979-02-03'], 'dob as a date')
  tt.equal((rows[users.alice].created_at as Date).toISOString(), '2021-02-01T08:00:00.000Z', 'naive timestamps read as UTC')
  tt.equal((rows[users.alice].last_login as Date).toISOString(), '2024-03-01T10:00:00.000Z', 'last_sign_in_at -> last_login')
  tt.same(Object.values(users).map((u) => `${rows[u].status}/${rows[u].is_active}`), [
    'active/true', 'active/true', 'active/true', 'inactive/false', 'active/true', 'inactive/false',
    'active/true', 'active/true', 'deleted/false', 'inactive/false', 'inactive/false', 'active/true'], 'statuses')
  tt.same([rows[users.alice].user_type, rows[users.dave].user_type, rows[users.judy].user_type], ['user', 'user', 'super_admin'], 'user types')
  tt.same([rows[users.frank].theme, rows[users.dave].theme, rows[users.ivan].theme], ['light', 'system', 'system'], 'themes')
  tt.same([rows[users.judy].profile_accessibility, rows[users.erin].profile_accessibility, rows[users.frank].profile_accessibility], ['private', 'private', 'public'])
  tt.same([rows[users.bob].language, rows[users.ivan].language, rows[users.erin].timezone, rows[users.judy].timezone], ['ar', 'en', 'UTC', 'America/New_York'])
  tt.match(rows[users.alice].password as string, /^\$2a\$10\$/, 'bcrypt hashes are kept as they are')

  const groups = await db.sql<Array<{ codename: string, group_id: string, is_system: boolean, is_active: boolean }>>`select * from "group"`
  for (const g of defaultGroups) {
    const found = groups.filter((row) => row.codename === g.codename)
    tt.equal(found.length, 1, `default group ${g.codename} once`)
    tt.equal(found[0].is_system, true, `${g.codename} is a system group`)
  }
  tt.same(groups.filter((g) => !g.is_system).map((g) => `${g.codename}/${g.is_active}`).sort(), ['legacy_team/false', 'support/true'], 'custom groups survive as they were')
  const [custom] = await db.sql`select category from permission where codename = 'export_reports'`
  tt.equal(custom.category, 'custom', 'a custom permission without a category gets one')

  const activity = Object.fromEntries((await db.sql`select * from activity_log`).map((r) => [r.log_id as string, r]))
  tt.same([1, 2, 3, 4, 5, 8].map((n) => activity[id('f', n)].level), ['info', 'info', 'warning', 'error', 'info', 'debug'], 'levels')
  tt.equal((activity[id('f', 1)].created_at as Date).toISOString(), '2024-03-01T10:00:00.123Z', 'created_at read as UTC')
  tt.equal(activity[id('f', 1)].session_id, '11111111-2222-4333-8444-555555555555', 'a UUID session id stays')
  tt.same(activity[id('f', 2)].metadata, { legacy_columns: { platform: 'android', session_id: 'sess-abc' } }, 'columns without a place go to metadata')
  tt.same(activity[id('f', 4)].metadata, { value: ['file.png', 3], legacy_columns: { platform: 'web', error_details: { message: 'bucket unreachable' } } })
  tt.same(activity[id('f', 5)].metadata, { legacy_columns: { level: 'verbose' } }, 'an unknown level is kept')
  tt.same([activity[id('f', 6)].action, activity[id('f', 6)].module], ['unknown', 'unknown'])
  tt.equal(activity[id('f', 7)].metadata, null)

  const [kept] = await db.sql`select data from legacy_upgrade.original_row where table_name = 'user' and row_id = ${users.bob}`
  tt.equal(kept.data.invited_by_user_id, users.alice, 'columns with no new home are kept')
  tt.notOk('password' in kept.data, 'but not the password hash')

  // The end state is what the migrations make of an empty database.
  const fresh = await createTestDatabase({ empty: true })
  tt.teardown(() => fresh.drop())
  const freshHandle = await openDatabase({ url: fresh.url, dataDir: '', poolMax: 1 })
  await migrateDatabase(freshHandle)
  await freshHandle.close()
  const freshSql = postgres(fresh.url!, { max: 1 })
  tt.teardown(() => freshSql.end({ timeout: 5 }))
  const upgraded = await snapshot(db.sql, ['public', 'drizzle'])
  const migrated = await snapshot(freshSql, ['public', 'drizzle'])
  tt.same(upgraded.columns, migrated.columns, 'the same columns as a migrated database')
  tt.same(upgraded.constraints, migrated.constraints, 'the same constraints')
  tt.same(upgraded.indexes, migrated.indexes, 'the same indexes')
  tt.same(upgraded.rows['drizzle.__drizzle_migrations'], migrated.rows['drizzle.__drizzle_migrations'], 'the same migrations journal rows')

  const settled = await snapshot(db.sql)
  const again = await migrateDatabase(db.handle, { log: (line) => printed.push(line) })
  tt.equal(again.upgrade, undefined, 'a second run finds nothing to upgrade')
  tt.same(await snapshot(db.sql), settled, 'and changes nothing')
})

t.test('the upgraded accounts log in over HTTP; bcrypt becomes Argon2id; inactive ones stay out', { skip }, async (tt) => {
  const db = await originalDatabase(tt)
  const before = await permissionsPerUser(db.sql)
  const prefix = `test:${randomBytes(6).toString('hex')}:`
  const dataDir = mkdtempSync(path.join(tmpdir(), 'upgrade-test-'))
  // The app's own start (DB_MIGRATE_ON_START) performs the upgrade, then seeds.
  const printed: string[] = []
  const log = console.log
  console.log = (text: string) => printed.push(text)
  const app = await buildApp(loadConfig({
    NODE_ENV: 'test',
    LOG_LEVEL: 'silent',
    JWT_SECRET_KEY: testSecret,
    DATA_DIR: dataDir,
    DATABASE_URL: db.url,
    DB_POOL_MAX: '3',
    REDIS_URL: testRedisUrl,
    REDIS_KEY_PREFIX: prefix,
    METRICS_ENABLED: 'false',
    LOAD_SHED_EVENT_LOOP_DELAY_MS: '0',
    DB_CONNECT_TIMEOUT_SECONDS: '30'
  })).finally(() => { console.log = log })
  tt.teardown(async () => {
    await app.close()
    await deleteRedisPrefix(prefix)
    rmSync(dataDir, { recursive: true, force: true })
  })
  tt.match(printed.join('\n'), 'Original Express/Prisma database found and upgraded', 'the start path upgraded it')

  const login = (identifier: string, password: string) =>
    app.inject({ method: 'POST', url: '/api/v1/auth/login-with-password', payload: { identifier, password } })
  const hashOf = async (userId: string) => (await db.sql`select password from "user" where user_id = ${userId}`)[0].password as string
  const seeded = new Set(['add_upload', 'delete_upload', 'test_sentry'])
  const accounts: Array<[string, string, string, string]> = [
    [users.alice, 'ALICE@example.com', 'alice-password-1', 'email, any case'],
    [users.aliceOld, 'alice.old', 'alice-old-pass-2', 'the account that lost its email, by user name'],
    [users.bob, '+971 50 123 4568', '483920', 'phone and the sign-up code that was its password'],
    [users.dave, 'dave@example.com', 'dave-password-1', 'custom group member'],
    [users.frank, 'Frank', 'frank-password-1', 'user name'],
    [users.frank2, 'frank2@example.com', 'frank-password-1', 'the account that lost its user name'],
    [users.judy, 'judy@example.com', 'judy-password-1', 'the super admin']
  ]
  for (const [userId, identifier, password, what] of accounts) {
    tt.match(await hashOf(userId), /^\$2a\$10\$/, `${what}: a bcrypt hash before`)
    const res = await login(identifier, password)
    tt.equal(res.statusCode, 200, `${what}: logs in (${res.body.slice(0, 200)})`)
    tt.equal(res.json().data.user.user_id, userId)
    tt.match(await hashOf(userId), /^\$argon2id\$/, `${what}: re-hashed with Argon2id`)
    const again = await login(identifier, password)
    tt.equal(again.statusCode, 200, `${what}: logs in with the new hash too`)
    const perms = await app.inject({ method: 'GET', url: '/api/v1/users/me/permissions', headers: { authorization: `Bearer ${res.json().data.access_token}` } })
    tt.equal(perms.statusCode, 200)
    const now = (perms.json().data.permissions as Array<{ codename: string }>).map((p) => p.codename).sort()
    if (userId === users.judy) {
      tt.equal(perms.json().data.is_super_admin, true, 'the super admin is one')
    } else {
      tt.same(now.filter((c) => !seeded.has(c)), before[userId], `${what}: the permissions it had (plus only the ones this project added)`)
    }
  }
  for (const [userId, identifier, password, what] of [
    [users.carol, 'carol@example.com', 'carol-password-1', 'INACTIVE'],
    [users.grace, 'grace@example.com', 'grace-password-1', 'trashed'],
    [users.heidi, 'heidi@example.com', 'heidi-password-1', 'Active but is_active=false'],
    [users.erin, 'erin@example.com', 'erin-password-1', 'unknown status'],
    [users.ivan, 'ivan@example.com', 'ivan-password-1', 'no status at all']
  ]) {
    const res = await login(identifier, password)
    tt.not(res.statusCode, 200, `${what}: cannot log in`)
    tt.equal(res.json().error.code, 'AUTH_ACCOUNT_INACTIVE', `${what}: refused as inactive`)
    tt.match(await hashOf(userId), /^\$2a\$10\$/, `${what}: hash untouched`)
  }
  tt.equal((await login('alice@example.com', 'wrong-password-1')).statusCode, 401, 'a wrong password still fails')
})

t.test('--dry-run reports the same and changes nothing (function and CLI)', { skip }, async (tt) => {
  const db = await originalDatabase(tt)
  const before = await snapshot(db.sql)
  const printed: string[] = []
  const { upgrade: dry } = await migrateDatabase(db.handle, { dryRun: true, log: (text) => printed.push(text) })
  tt.ok(dry?.dryRun, 'a dry-run report')
  tt.match(printed.join('\n'), 'DRY RUN')
  tt.same(await snapshot(db.sql), before, 'schemas, columns, constraints, indexes and every row are as before')

  const cli = await new Promise<{ code: number | null, stdout: string }>((resolve) => {
    const child = spawn('npm', ['run', '--silent', 'db:migrate', '--', '--dry-run'], {
      cwd: root, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', DATABASE_URL: db.url }, stdio: ['ignore', 'pipe', 'inherit']
    })
    let stdout = ''
    child.stdout.on('data', (d) => { stdout += d })
    child.on('close', (code) => resolve({ code, stdout }))
  })
  tt.equal(cli.code, 0)
  tt.match(cli.stdout, 'DRY RUN', '`npm run db:migrate -- --dry-run` prints the report')
  for (const [rowId, column] of expectedConflicts) tt.match(cli.stdout, `${rowId} ${column} `)
  tt.same(await snapshot(db.sql), before, 'the CLI dry run changed nothing either')

  const { upgrade: real } = await migrateDatabase(db.handle, { log: () => {} })
  tt.same(real!.conflicts, dry!.conflicts, 'the real run meets exactly the conflicts the dry run announced')
  tt.same(real!.tables, dry!.tables)
  tt.same(real!.mappings, dry!.mappings)
})

t.test('a failure after any step leaves the database exactly as it was', { skip }, async (tt) => {
  const db = await originalDatabase(tt)
  const before = await snapshot(db.sql)
  for (const step of upgradeSteps) {
    await tt.rejects(migrateDatabase(db.handle, { failUpgradeAfterStep: step, log: () => {} }), InjectedUpgradeFailure, `fails after ${step}`)
    tt.same(await snapshot(db.sql), before, `nothing of step ${step} or before it stays`)
  }
  const { upgrade } = await migrateDatabase(db.handle, { log: () => {} })
  tt.ok(upgrade, 'and it can still be upgraded')
})

t.test('a database with the original marker but missing tables is refused, untouched', { skip }, async (tt) => {
  const db = await originalDatabase(tt, 'drop table activity_log')
  const before = await snapshot(db.sql)
  await tt.rejects(migrateDatabase(db.handle, { log: () => {} }), PartialOriginalDatabaseError)
  await tt.rejects(migrateDatabase(db.handle, { log: () => {} }), /activity_log\.log_id/, 'naming what is missing')
  tt.same(await snapshot(db.sql), before)
})

t.test('migrations newer than the baseline apply on top of an upgraded database', { skip }, async (tt) => {
  const db = await originalDatabase(tt)
  const folder = mkdtempSync(path.join(tmpdir(), 'upgrade-migrations-'))
  tt.teardown(() => rmSync(folder, { recursive: true, force: true }))
  cpSync(resolveMigrationsFolder(), folder, { recursive: true })
  const journalPath = path.join(folder, 'meta', '_journal.json')
  const journal = JSON.parse(readFileSync(journalPath, 'utf8')) as { entries: Array<{ idx: number, version: string, when: number, tag: string, breakpoints: boolean }> }
  const last = journal.entries.at(-1)!
  journal.entries.push({ idx: last.idx + 1, version: last.version, when: last.when + 1000, tag: '9999_upgrade_test', breakpoints: true })
  writeFileSync(journalPath, JSON.stringify(journal))
  writeFileSync(path.join(folder, '9999_upgrade_test.sql'), 'ALTER TABLE "user" ADD COLUMN "upgrade_test" text;')

  const client = postgres(db.url, { max: 1, onnotice: () => {} })
  tt.teardown(() => client.end({ timeout: 5 }))
  const report = await upgradeOriginalDatabase(client, { migrationsFolder: folder })
  tt.ok(report)
  await migratePostgres(drizzlePostgres({ client }), { migrationsFolder: folder })
  const [{ n }] = await db.sql`select count(*)::int as n from information_schema.columns where table_name = 'user' and column_name = 'upgrade_test'`
  tt.equal(n, 1, 'the newer migration ran')
  const applied = await db.sql`select created_at from drizzle.__drizzle_migrations order by id`
  tt.same(applied.map((r) => Number(r.created_at)), journal.entries.map((e) => e.when), 'each migration recorded once, baseline first')
})

t.test('a fresh or already migrated database is not an original one', { skip }, async (tt) => {
  const fresh = await createTestDatabase({ empty: true })
  tt.teardown(() => fresh.drop())
  const handle = await openDatabase({ url: fresh.url, dataDir: '', poolMax: 1 })
  tt.teardown(() => handle.close())
  tt.equal((await migrateDatabase(handle)).upgrade, undefined, 'empty database: plain migrations')
  tt.equal((await migrateDatabase(handle)).upgrade, undefined, 'migrated database: nothing to do')
})
