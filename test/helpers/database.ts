import { createHash, randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import { PGlite } from '@electric-sql/pglite'
import postgres from 'postgres'
import { openDatabase, type DatabaseHandle } from '../../db/client.ts'
import { defaultGroups, defaultPermissions } from '../../db/defaults.ts'
import { migrateDatabase, resolveMigrationsFolder } from '../../db/migrate.ts'
import { seedDatabase } from '../../db/seed.ts'

/**
 * One database per test (file), cloned from a migrated and seeded template so
 * no test pays for migrations and test files can run in parallel:
 * - postgres (TEST_DB=postgres, the default): `CREATE DATABASE t_… TEMPLATE
 *   app_template_<hash>` on TEST_DATABASE_URL's server;
 * - embedded (TEST_DB=embedded): an in-memory PGlite loaded from a data-dir
 *   dump kept in `.tap/pglite-template-<hash>.tar`.
 * The hash covers the migrations, the default data and the seed code, so a
 * schema change gets a new template and an unchanged one is reused across runs.
 * test/global-setup.ts builds the template once; if it did not run, the first
 * createTestDatabase() builds it, under a lock so parallel files do not clash.
 */

export type TestDatabaseMode = 'postgres' | 'embedded'
export const testDatabaseMode: TestDatabaseMode = process.env.TEST_DB === 'embedded' ? 'embedded' : 'postgres'
export const testDatabaseServerUrl = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'

export interface TestDatabase {
  /** PostgreSQL URL of the new database (postgres mode). */
  url?: string
  /** The open in-memory PGlite (embedded mode); pass it to the app, do not close it yourself. */
  pglite?: PGlite
  /** Drops the database (postgres, terminating its connections) or closes the PGlite; idempotent. */
  drop: () => Promise<void>
}

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
const tapDir = path.join(root, '.tap')
const SAFE_NAME = /^[a-z0-9_]+$/
// sha256("fastify-auth-backend:test-template") truncated to a signed int64.
const TEMPLATE_LOCK_KEY = '-4624988270624570008'
const TEST_DATABASE = /^t_([a-z0-9]+)_[0-9a-f]+$/

/** 8 hex characters identifying what a template contains. */
export function templateHash (): string {
  const hash = createHash('sha256')
  const folder = resolveMigrationsFolder()
  const walk = (dir: string, prefix: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      if (entry.isDirectory()) walk(path.join(dir, entry.name), `${prefix}${entry.name}/`)
      else hash.update(`${prefix}${entry.name}\0`).update(readFileSync(path.join(dir, entry.name))).update('\0')
    }
  }
  walk(folder, '')
  hash.update(JSON.stringify({ defaultPermissions, defaultGroups }))
  hash.update(readFileSync(path.join(root, 'db', 'seed.ts')))
  return hash.digest('hex').slice(0, 8)
}

export const templateDatabaseName = () => safeName(`app_template_${templateHash()}`)

/** Where the embedded template dump lives; the PGlite version is part of the name (dump format). */
export function templateDumpPath (): string {
  const version = (JSON.parse(readFileSync(path.join(root, 'node_modules', '@electric-sql', 'pglite', 'package.json'), 'utf8')) as { version: string }).version
  return path.join(tapDir, `pglite-template-${templateHash()}-${version.replace(/[^0-9a-z.]/gi, '')}.tar`)
}

/** The URL of database `name` on the test server. */
export function testDatabaseUrl (name: string): string {
  const url = new URL(testDatabaseServerUrl)
  url.pathname = `/${safeName(name)}`
  return url.toString()
}

const prepared = new Map<TestDatabaseMode, Promise<string>>()

/**
 * Builds the template of `mode` unless it exists; returns the template
 * database name (postgres) or the dump file path (embedded). Memoized per process.
 */
export function prepareTemplate (mode: TestDatabaseMode = testDatabaseMode): Promise<string> {
  let promise = prepared.get(mode)
  if (!promise) {
    promise = (mode === 'postgres' ? preparePostgresTemplate() : prepareEmbeddedTemplate()).catch((error: unknown) => {
      prepared.delete(mode)
      throw error
    })
    prepared.set(mode, promise)
  }
  return promise
}

/**
 * Fills `${dataDir}/pglite` with the migrated and seeded template, as the app
 * or a CLI would find it after its first start, without the slow initdb.
 * For tests of the embedded mode that need a real folder (child processes, CLIs).
 */
export async function createEmbeddedDataDir (dataDir: string): Promise<void> {
  const folder = path.join(dataDir, 'pglite')
  mkdirSync(folder, { recursive: true })
  const pglite = new PGlite({ dataDir: folder, loadDataDir: await templateDump() })
  await pglite.close()
}

export interface CreateTestDatabaseOptions {
  /** No template: an empty database, not migrated (for migration tests). Embedded: a fresh initdb, ~5 s. */
  empty?: boolean
}

export async function createTestDatabase (opts: CreateTestDatabaseOptions = {}): Promise<TestDatabase> {
  return testDatabaseMode === 'postgres' ? createPostgresDatabase(opts.empty === true) : createEmbeddedDatabase(opts.empty === true)
}

/**
 * A new test database opened through db/client.ts (no app), closed and dropped
 * at the end of the test `t`. For tests of the data layer and repositories.
 */
export async function openTestDatabase (t: { teardown: (fn: () => unknown) => void }, opts: CreateTestDatabaseOptions = {}): Promise<DatabaseHandle & { testDatabase: TestDatabase }> {
  const testDatabase = await createTestDatabase(opts)
  const handle = await openDatabase({ url: testDatabase.url, pglite: testDatabase.pglite, dataDir: '', poolMax: 4 })
  t.teardown(async () => {
    await handle.close()
    await testDatabase.drop()
  })
  return Object.assign(handle, { testDatabase })
}

/**
 * Drops test databases left behind by runs that crashed (their names carry
 * the creation time), older than `maxAgeMs`. Returns how many.
 */
export async function dropStaleTestDatabases (maxAgeMs = 60 * 60 * 1000): Promise<number> {
  return withAdmin(async (admin) => {
    const rows = await admin<{ datname: string }[]>`select datname from pg_database where datname like 't\\_%'`
    let dropped = 0
    for (const { datname } of rows) {
      const match = TEST_DATABASE.exec(datname)
      if (!match || Date.now() - parseInt(match[1], 36) * 1000 < maxAgeMs) continue
      await admin.unsafe(`drop database if exists "${safeName(datname)}" with (force)`)
      dropped++
    }
    return dropped
  })
}

// --- postgres -------------------------------------------------------------------

function adminClient (url = testDatabaseServerUrl): postgres.Sql {
  return postgres(url, { max: 1, onnotice: () => {}, connect_timeout: 5, idle_timeout: 1 })
}

async function withAdmin<T> (fn: (admin: postgres.Sql) => Promise<T>): Promise<T> {
  const admin = adminClient()
  try {
    return await fn(admin)
  } finally {
    await admin.end({ timeout: 5 })
  }
}

async function templateReady (admin: postgres.Sql, name: string): Promise<boolean | undefined> {
  const [row] = await admin<{ datistemplate: boolean }[]>`select datistemplate from pg_database where datname = ${name}`
  return row?.datistemplate
}

async function preparePostgresTemplate (): Promise<string> {
  const name = templateDatabaseName()
  await withAdmin(async (admin) => {
    if (await templateReady(admin, name)) return
    // One builder at a time across processes; the others wait, then find it ready.
    await admin`select pg_advisory_lock(${TEMPLATE_LOCK_KEY}::bigint)`
    try {
      const state = await templateReady(admin, name)
      if (state) return
      // Exists but never marked ready: a build that crashed half-way.
      if (state === false) await admin.unsafe(`drop database if exists "${name}" with (force)`)
      await admin.unsafe(`create database "${name}"`)
      const handle = await openDatabase({ url: testDatabaseUrl(name), dataDir: '', poolMax: 2 })
      try {
        await migrateDatabase(handle)
        await seedDatabase(handle.db)
      } finally {
        await handle.close()
      }
      // Marking it a template is the "ready" flag; refusing connections keeps
      // stray sessions from blocking CREATE DATABASE … TEMPLATE.
      await admin.unsafe(`alter database "${name}" with is_template true allow_connections false`)
    } finally {
      await admin`select pg_advisory_unlock(${TEMPLATE_LOCK_KEY}::bigint)`
    }
  })
  return name
}

async function createPostgresDatabase (empty: boolean): Promise<TestDatabase> {
  const template = empty ? 'template0' : await prepareTemplate('postgres')
  const name = safeName(`t_${Math.floor(Date.now() / 1000).toString(36)}_${randomBytes(5).toString('hex')}`)
  await withAdmin(async (admin) => {
    for (let attempt = 1; ; attempt++) {
      try {
        await admin.unsafe(`create database "${name}" template "${template}"`)
        return
      } catch (error) {
        // 55006: someone is still connected to the template (its builder
        // disconnecting); the lock Postgres takes is short, so retry.
        if ((error as { code?: string }).code !== '55006' || attempt >= 50) throw error
        await sleep(100)
      }
    }
  })
  let dropped: Promise<void> | undefined
  return {
    url: testDatabaseUrl(name),
    drop: () => (dropped ??= withAdmin(async (admin) => {
      await admin.unsafe(`drop database if exists "${name}" with (force)`)
    }))
  }
}

// --- embedded -------------------------------------------------------------------

async function prepareEmbeddedTemplate (): Promise<string> {
  const file = templateDumpPath()
  if (existsSync(file)) return file
  const pglite = new PGlite()
  try {
    const handle = await openDatabase({ dataDir: '', poolMax: 1, pglite })
    await migrateDatabase(handle)
    await seedDatabase(handle.db)
    const dump = await pglite.dumpDataDir('none')
    mkdirSync(tapDir, { recursive: true })
    // Write aside and rename: a parallel reader sees the old state or the whole file, never half.
    const partial = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.partial`
    writeFileSync(partial, Buffer.from(await dump.arrayBuffer()))
    renameSync(partial, file)
    for (const old of readdirSync(tapDir)) {
      if (old.startsWith('pglite-template-') && old.endsWith('.tar') && path.join(tapDir, old) !== file) {
        rmSync(path.join(tapDir, old), { force: true })
      }
    }
  } finally {
    await pglite.close()
  }
  return file
}

let dump: Promise<Blob> | undefined

function templateDump (): Promise<Blob> {
  dump ??= prepareTemplate('embedded').then((file) => new Blob([readFileSync(file)]))
  return dump
}

async function createEmbeddedDatabase (empty: boolean): Promise<TestDatabase> {
  const pglite = new PGlite(empty ? {} : { loadDataDir: await templateDump() })
  await pglite.waitReady
  let closed: Promise<void> | undefined
  return {
    pglite,
    drop: () => (closed ??= pglite.closed ? Promise.resolve() : pglite.close())
  }
}

function safeName (name: string): string {
  if (!SAFE_NAME.test(name) || name.length > 63) throw new Error(`unsafe database name: ${name}`)
  return name
}
