import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { gunzipSync, gzipSync } from 'node:zlib'
import { randomBytes } from 'node:crypto'
import { PGlite } from '@electric-sql/pglite'
import { sql, type SQL } from 'drizzle-orm'
import t from 'tap'
import { buildTemplate } from '../../db/build-template.ts'
import { executeRows, openDatabase, type Database } from '../../db/client.ts'
import { migrateDatabase } from '../../db/migrate.ts'
import { seedDatabase } from '../../db/seed.ts'
import { readTemplate, templateKey, writeTemplate } from '../../db/template.ts'
import { openTestDatabase, testDatabaseMode } from '../helpers/database.ts'

/**
 * The local template of the embedded database (db/template.ts): a first start
 * from it gives the database a migrated one has; a stale or corrupt template is
 * ignored (the start runs initdb); it never holds a user or a secret.
 */

const scratch = (prefix: string) => {
  const dir = mkdtempSync(path.join(tmpdir(), prefix))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

// What the builder could leak if it ever read the configuration or a DATA_DIR.
const canaries = {
  BOOTSTRAP_ADMIN_EMAIL: `canary-${randomBytes(6).toString('hex')}@example.com`,
  BOOTSTRAP_ADMIN_PASSWORD: `canary-password-${randomBytes(12).toString('hex')}`,
  JWT_SECRET_KEY: `canary-secret-${randomBytes(24).toString('hex')}`
}
const saved = Object.fromEntries(Object.keys(canaries).map((name) => [name, process.env[name]]))
Object.assign(process.env, canaries)
const templateDir = scratch('template-')
// An ordinary DATA_DIR with a secret, as a server leaves it, beside the build.
const dataDir = scratch('template-data-')
writeFileSync(path.join(dataDir, 'secret.key'), canaries.JWT_SECRET_KEY)
const templateFile = await buildTemplate(templateDir)
for (const [name, value] of Object.entries(saved)) {
  if (value === undefined) delete process.env[name]
  else process.env[name] = value
}

/** The schema, the migrations table and the default data, as comparable strings. */
async function catalog (db: Database) {
  const rows = async (query: SQL) => (await executeRows<Record<string, unknown>>(db, query)).map((row) => JSON.stringify(row)).sort()
  // activity_log's partitions differ by the month their bounds were computed in; their parent is compared.
  const notPartition = sql`not in (select oid from pg_class where relispartition)`
  return {
    columns: await rows(sql`select c.relname as table, a.attname as column, format_type(a.atttypid, a.atttypmod) as type, a.attnotnull as not_null,
      pg_get_expr(d.adbin, d.adrelid) as default from pg_attribute a join pg_class c on c.oid = a.attrelid
      left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
      where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p') and a.attnum > 0 and not a.attisdropped and c.oid ${notPartition}`),
    indexes: await rows(sql`select c.relname as index, pg_get_indexdef(i.indexrelid) as def from pg_index i join pg_class c on c.oid = i.indexrelid
      where c.relnamespace = 'public'::regnamespace and i.indrelid ${notPartition}`),
    // PostgreSQL 18 (PGlite) lists NOT NULL as constraints too; columns.not_null compares those.
    constraints: await rows(sql`select conrelid::regclass::text as table, conname as name, pg_get_constraintdef(oid) as def from pg_constraint
      where connamespace = 'public'::regnamespace and contype <> 'n' and conrelid ${notPartition}`),
    partitions: await rows(sql`select relname as name from pg_class where relispartition and relkind = 'r' and relnamespace = 'public'::regnamespace`),
    migrations: await rows(sql`select hash, created_at::text as created_at from drizzle.__drizzle_migrations`),
    permissions: await rows(sql`select codename, name, category, description from permission`),
    groups: await rows(sql`select codename, name, description, is_system from "group"`),
    grants: await rows(sql`select g.codename as "group", p.codename as permission from group_permission gp
      join "group" g on g.group_id = gp.group_id join permission p on p.permission_id = gp.permission_id`)
  }
}

t.test('a first start from the template has the schema, migrations and default data of a migrated database', async (t) => {
  const migrated = await openTestDatabase(t)
  const folderDir = scratch('template-start-')
  const handle = await openDatabase({ dataDir: folderDir, poolMax: 1, templateDir })
  t.teardown(() => handle.close())
  t.same(handle.embeddedStart, { from: 'template' }, 'the new folder was loaded from the template, not made by initdb')
  // What a server then does at every start: nothing is left to apply.
  await migrateDatabase(handle)
  const seeded = await seedDatabase(handle.db)
  t.same(seeded, { permissionsCreated: [], groupsCreated: [], grantsCreated: 0 }, 'the default data is already there')
  const expected = await catalog(migrated.db)
  const actual = await catalog(handle.db)
  t.ok(expected.columns.length > 50 && expected.migrations.length > 0 && expected.grants.length > 0, `the ${testDatabaseMode} database compared with is migrated and seeded`)
  for (const part of Object.keys(expected) as Array<keyof typeof expected>) {
    t.same(actual[part], expected[part], `${part} match a database migrated and seeded on ${testDatabaseMode}`)
  }
  // The folder is a real, writable database that reopens as an existing one.
  await handle.db.execute(sql`insert into activity_log (level, action, module, message) values ('info', 'template_test', 'test', 'kept')`)
  await handle.close()
  const again = await openDatabase({ dataDir: folderDir, poolMax: 1, templateDir })
  t.teardown(() => again.close())
  t.same(again.embeddedStart, { from: 'existing' })
  const [row] = await executeRows<{ n: number }>(again.db, sql`select count(*)::int as n from activity_log where action = 'template_test'`)
  t.equal(row.n, 1, 'the row written after the load is still there')
})

t.test('a template never holds a user, a session or a secret', async (t) => {
  const tar = gunzipSync(readFileSync(templateFile))
  for (const [name, value] of Object.entries(canaries)) {
    t.equal(tar.indexOf(Buffer.from(value)), -1, `the template's bytes do not contain ${name}`)
  }
  t.equal(tar.indexOf(Buffer.from('secret.key')), -1, 'no file of a DATA_DIR is in it')
  const pglite = new PGlite({ loadDataDir: new Blob([tar]) })
  t.teardown(() => pglite.close())
  const { rows: tables } = await pglite.query<{ name: string }>(`select relname as name from pg_class
    where relnamespace = 'public'::regnamespace and relkind = 'r'`)
  t.ok(tables.length > 10, 'every table is there')
  const defaults = new Set(['permission', 'group', 'group_permission'])
  for (const { name } of tables) {
    const { rows: [{ n }] } = await pglite.query<{ n: number }>(`select count(*)::int as n from "${name}"`)
    if (defaults.has(name)) t.ok(n > 0, `${name} holds the default data`)
    else t.equal(n, 0, `${name} is empty`)
  }
})

t.test('a stale template is ignored', async (t) => {
  const other = readTemplate(templateDir, 'ffffffffffffffff')
  t.equal(other.ok, false, 'a template made for other migrations or defaults is not found for this key')
  t.match(other, { reason: /no template for this schema/ })
  t.match(readTemplate(scratch('template-none-')), { ok: false, reason: /no template for this schema/ }, 'an empty folder has none')

  const dir = scratch('template-stale-')
  cpSync(templateDir, dir, { recursive: true })
  const meta = readdirSync(dir).find((name) => name.endsWith('.json'))!
  const recorded = JSON.parse(readFileSync(path.join(dir, meta), 'utf8')) as Record<string, unknown>
  writeFileSync(path.join(dir, meta), JSON.stringify({ ...recorded, pglite: '0.0.1' }))
  t.match(readTemplate(dir), { ok: false, reason: /stale template/ }, 'a template recorded for another PGlite build is stale')
  writeFileSync(path.join(dir, meta), JSON.stringify({ ...recorded, key: 'ffffffffffffffff' }))
  t.match(readTemplate(dir), { ok: false, reason: /stale template/ }, 'metadata naming another key is stale')
  t.equal(readTemplate(templateDir).ok, true, 'the template built for this checkout is valid')

  // Rebuilding replaces the other templates of the folder.
  writeTemplate(gzipSync(Buffer.from('old')), dir, 'ffffffffffffffff')
  const rebuilt = writeTemplate(readFileSync(templateFile), dir, templateKey())
  t.same(readdirSync(dir).sort(), [path.basename(rebuilt), path.basename(rebuilt).replace(/\.tar\.gz$/, '.json')].sort(), 'only the current template is kept')
  t.equal(readTemplate(dir).ok, true)
})

t.test('a corrupt template is ignored', async (t) => {
  const dir = scratch('template-corrupt-')
  cpSync(templateDir, dir, { recursive: true })
  const tarName = readdirSync(dir).find((name) => name.endsWith('.tar.gz'))!
  const bytes = readFileSync(path.join(dir, tarName))
  bytes[Math.floor(bytes.length / 2)] ^= 0xff
  writeFileSync(path.join(dir, tarName), bytes)
  t.match(readTemplate(dir), { ok: false, reason: /checksum mismatch/ }, 'a changed byte fails the checksum')
  writeFileSync(path.join(dir, tarName), bytes.subarray(0, 1000))
  t.match(readTemplate(dir), { ok: false, reason: /checksum mismatch/ }, 'a truncated file fails the checksum')
  writeFileSync(path.join(dir, tarName.replace(/\.tar\.gz$/, '.json')), '{"format": 1, "key"')
  t.match(readTemplate(dir), { ok: false, reason: /unreadable template/ }, 'torn metadata makes it unreadable')
})

// A template whose checksum matches but whose content is no data folder: the
// load fails and the start falls back to initdb (several seconds of CPU: once).
t.test('a template that does not load falls back to initdb', { skip: testDatabaseMode !== 'embedded' && 'embedded mode only (PGlite either way)' }, async (t) => {
  const dir = scratch('template-garbage-')
  writeTemplate(gzipSync(randomBytes(64 * 1024)), dir)
  t.equal(readTemplate(dir).ok, true, 'its checksum matches')
  const folderDir = scratch('template-garbage-data-')
  const handle = await openDatabase({ dataDir: folderDir, poolMax: 1, templateDir: dir })
  t.teardown(() => handle.close())
  t.match(handle.embeddedStart, { from: 'initdb', reason: /did not load/ })
  await migrateDatabase(handle)
  const [row] = await executeRows<{ n: number }>(handle.db, sql`select count(*)::int as n from drizzle.__drizzle_migrations`)
  t.ok(row.n > 0, 'the database made by initdb migrates and answers')
  t.notOk(existsSync(path.join(folderDir, 'pglite.loading')), 'no load marker is left')
})

t.test('a template load cut short is redone at the next start', async (t) => {
  const folderDir = scratch('template-cut-')
  const folder = path.join(folderDir, 'pglite')
  mkdirSync(path.join(folder, 'base'), { recursive: true })
  writeFileSync(path.join(folder, 'PG_VERSION'), '17\n')
  writeFileSync(path.join(folder, 'base', 'half-written'), 'x')
  writeFileSync(`${folder}.loading`, '')
  const handle = await openDatabase({ dataDir: folderDir, poolMax: 1, templateDir })
  t.teardown(() => handle.close())
  t.same(handle.embeddedStart, { from: 'template' }, 'the partial folder was emptied and loaded again')
  t.notOk(existsSync(path.join(folder, 'base', 'half-written')), 'what the cut load left is gone')
  t.notOk(existsSync(`${folder}.loading`), 'the marker is removed once loaded')
  const [row] = await executeRows<{ n: number }>(handle.db, sql`select count(*)::int as n from permission`)
  t.ok(row.n > 0)
})
