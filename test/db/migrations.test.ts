import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { PGlite } from '@electric-sql/pglite'
import { getTableColumns, getTableName, is, sql } from 'drizzle-orm'
import { PgTable } from 'drizzle-orm/pg-core'
import t from 'tap'
import { executeRows, openDatabase, type DatabaseHandle } from '../../db/client.ts'
import { migrateDatabase, resolveMigrationsFolder } from '../../db/migrate.ts'
import * as schema from '../../db/schema/index.ts'
import { createEmbeddedDataDir, openTestDatabase, testDatabaseMode } from '../helpers/database.ts'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
const tsx = import.meta.resolve('tsx')
const journal = JSON.parse(readFileSync(path.join(resolveMigrationsFolder(), 'meta', '_journal.json'), 'utf8')) as { entries: unknown[] }

function run (script: string, args: string[], env: Record<string, string>, cwd: string) {
  return new Promise<{ code: number | null, stdout: string, stderr: string }>((resolve) => {
    const child = spawn(process.execPath, ['--import', tsx, path.join(root, script), ...args], {
      cwd, env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe']
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => { stdout += d })
    child.stderr.on('data', (d) => { stderr += d })
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}

async function schemaObjects (handle: DatabaseHandle) {
  const columns = await executeRows<{ table_name: string, column_name: string }>(handle.db, sql`
    select table_name, column_name from information_schema.columns where table_schema = 'public'
      and table_name not in (select relname from pg_class where relispartition)`)
  const indexes = await executeRows<{ indexname: string }>(handle.db, sql`select indexname from pg_indexes where schemaname = 'public'`)
  const checks = await executeRows<{ conname: string }>(handle.db, sql`
    select conname from pg_constraint c join pg_namespace n on n.oid = c.connamespace where n.nspname = 'public' and contype = 'c'`)
  const [{ n: applied }] = await executeRows<{ n: number }>(handle.db, sql`select count(*)::int as n from drizzle.__drizzle_migrations`)
  return {
    columns: new Set(columns.map((c) => `${c.table_name}.${c.column_name}`)),
    indexes: new Set(indexes.map((i) => i.indexname)),
    checks: new Set(checks.map((c) => c.conname)),
    applied
  }
}

// Every column Drizzle knows must exist in the migrated database, and no other:
// the committed migrations and db/schema describe the same tables (activity_log's
// partitions repeat its columns and are left out).
const expectedColumns = new Set(Object.values(schema as Record<string, unknown>)
  .filter((value): value is PgTable => is(value, PgTable))
  .flatMap((table) => Object.values(getTableColumns(table)).map((column) => `${getTableName(table)}.${column.name}`)))

function assertSchema (tt: Pick<typeof t, 'same' | 'ok' | 'equal'>, objects: Awaited<ReturnType<typeof schemaObjects>>) {
  tt.same([...objects.columns].sort(), [...expectedColumns].sort(), 'the tables have exactly the schema\'s columns')
  for (const index of ['user_email_lower_key', 'user_user_name_lower_key', 'user_phone_number_key', 'session_user_id_active_idx',
    'activity_log_created_at_log_id_idx', 'activity_log_ip_address_created_at_idx', 'media_user_id_created_at_idx', 'group_permission_pkey']) {
    tt.ok(objects.indexes.has(index), `index ${index}`)
  }
  for (const check of ['user_status_check', 'user_auth_type_check', 'session_auth_method_check', 'activity_log_level_check', 'media_purpose_check']) {
    tt.ok(objects.checks.has(check), `check ${check}`)
  }
  tt.equal(objects.applied, journal.entries.length, 'every migration is recorded once')
}

t.test('the migrations folder is found next to the code', async (tt) => {
  tt.equal(resolveMigrationsFolder(), path.join(root, 'db', 'migrations'))
})

// Each driver is exercised by its own run of the suite (TEST_DB), so a run
// only pays for its own: a fresh PGlite costs an initdb of several seconds.
t.test('PGlite: migrations apply to a fresh database, and again as a no-op', { skip: testDatabaseMode !== 'embedded' && 'embedded mode only' }, async (tt) => {
  const pglite = new PGlite()
  tt.teardown(() => pglite.close())
  const handle = await openDatabase({ dataDir: '', poolMax: 1, pglite })
  await migrateDatabase(handle)
  await migrateDatabase(handle)
  assertSchema(tt, await schemaObjects(handle))
})

t.test('PostgreSQL: migrations apply to an empty database; two instances migrating at once do not clash', { skip: testDatabaseMode !== 'postgres' && 'postgres mode only' }, async (tt) => {
  const first = await openTestDatabase(tt, { empty: true })
  const second = await openDatabase({ url: first.testDatabase.url, dataDir: '', poolMax: 2 })
  tt.teardown(() => second.close())
  await Promise.all([migrateDatabase(first), migrateDatabase(second)])
  await migrateDatabase(first)
  assertSchema(tt, await schemaObjects(first))
})

t.test('the migrate CLI works from any working directory', async (tt) => {
  const cwd = mkdtempSync(path.join(tmpdir(), 'migrate-cli-'))
  tt.teardown(() => rmSync(cwd, { recursive: true, force: true }))
  let env: Record<string, string>
  if (testDatabaseMode === 'postgres') {
    const database = await openTestDatabase(tt, { empty: true })
    env = { DATABASE_URL: database.testDatabase.url! }
  } else {
    // An already migrated folder (an initdb on disk would take many seconds):
    // here the point is finding the migrations and the folder from elsewhere.
    env = { DATA_DIR: path.join(cwd, 'data') }
    await createEmbeddedDataDir(env.DATA_DIR)
  }
  const result = await run('db/migrate.ts', [], env, cwd)
  tt.equal(result.code, 0, result.stderr)
  tt.match(result.stdout, /migrations applied/)
  if (env.DATABASE_URL) {
    const handle = await openDatabase({ url: env.DATABASE_URL, dataDir: '', poolMax: 1 })
    tt.teardown(() => handle.close())
    assertSchema(tt, await schemaObjects(handle))
  }
})

t.test('db:check finds no schema change without a migration', { skip: testDatabaseMode !== 'postgres' && 'needs no database; checked in the postgres run' }, async (tt) => {
  const result = await run('db/check-migrations.ts', [], { HOME: process.env.HOME ?? '' }, root)
  tt.equal(result.code, 0, result.stdout + result.stderr)
  tt.match(result.stdout, /match/)
})
