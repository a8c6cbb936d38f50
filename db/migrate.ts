import { createHash } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type postgres from 'postgres'
import { drizzle as drizzlePostgres } from 'drizzle-orm/postgres-js'
import { migrate as migratePostgres } from 'drizzle-orm/postgres-js/migrator'
import type { PgliteDatabase } from 'drizzle-orm/pglite'
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator'
import { loadConfig } from '../config.ts'
import { errorMessage, isMainModule, loadDotenv, reportHeldFolder } from './cli.ts'
import { dedicatedConnection, openDatabase, type DatabaseHandle, type Schema } from './client.ts'
import { defaultGroups, defaultPermissions } from './defaults.ts'
import { DataDirLockedError, type AppliedState } from './pglite-lock.ts'
import { formatReport } from './upgrade/report.ts'
import { upgradeOriginalDatabase, type UpgradeReport, type UpgradeStep } from './upgrade/upgrade.ts'

const here = path.dirname(fileURLToPath(import.meta.url))

/**
 * Where the SQL migrations are. Looked up relative to this file, never the
 * working directory, so `tsx db/migrate.ts` works from anywhere:
 * - from source, this file is `<root>/db/migrate.ts`: `./migrations`;
 * - from a build, it is `<root>/dist/db/migrate.js`. `npm run build` copies
 *   the folder to `dist/db/migrations`; a build made by plain `tsc` has no
 *   .sql files, so `<root>/db/migrations` (two levels up) is the fallback.
 */
export function resolveMigrationsFolder (): string {
  const candidates = [path.join(here, 'migrations'), path.join(here, '..', '..', 'db', 'migrations')]
  const found = candidates.find((dir) => existsSync(path.join(dir, 'meta', '_journal.json')))
  if (!found) throw new Error(`No migrations found; looked in ${candidates.join(', ')}`)
  return found
}

/**
 * What a start of this checkout applies: the last migration of the journal and
 * a hash of the default permissions and groups. The server records it in the
 * embedded folder's lock once applied, so `db:migrate` and `db:seed` run beside
 * it can tell their work is already done (db/cli.ts reportHeldFolder).
 */
export function appliedState (): AppliedState {
  const journal = JSON.parse(readFileSync(path.join(resolveMigrationsFolder(), 'meta', '_journal.json'), 'utf8')) as { entries: Array<{ tag: string }> }
  const defaults = createHash('sha256').update(JSON.stringify({ defaultPermissions, defaultGroups })).digest('hex').slice(0, 12)
  return { migration: journal.entries.at(-1)?.tag ?? 'none', defaults }
}

// Any constant works as long as nothing else in the database uses it; this is
// the first 8 bytes of sha256("fastify-auth-backend:migrate") as a signed int64.
const MIGRATION_LOCK_KEY = 1_520_769_055_570_624_261n

export interface MigrateOptions {
  /**
   * Only report what upgrading an original Express/Prisma database would do,
   * in a transaction that is rolled back; no migration is applied either.
   */
  dryRun?: boolean
  /** Where the upgrade report goes (default: stdout). */
  log?: (text: string) => void
  /** Tests: make the upgrade fail after this step. */
  failUpgradeAfterStep?: UpgradeStep
}

export interface MigrateResult {
  /** Set when the database was (or, in a dry run, would be) upgraded from the original project's. */
  upgrade?: UpgradeReport
}

/**
 * Applies pending migrations. On PostgreSQL several instances may start at
 * once: each takes a session advisory lock on a connection of its own first, so
 * one migrates and the others then find nothing left to do. (Drizzle's
 * migrator reads the last applied migration before it opens its transaction,
 * so without the lock two instances could both apply the same file.) PGlite is
 * single-process and its folder lock already excludes a second instance.
 *
 * Under the same lock, a database of the original Express/Prisma project
 * (recognised by its shape, see db/upgrade/detect.ts) is first upgraded in
 * place to the baseline migration's schema (db/upgrade/upgrade.ts); the
 * migrator then applies whatever is newer. PGlite never holds such a database.
 */
export async function migrateDatabase (handle: DatabaseHandle, options: MigrateOptions = {}): Promise<MigrateResult> {
  const migrationsFolder = resolveMigrationsFolder()
  if (handle.driver === 'pglite') {
    if (options.dryRun) return {}
    // Safe: a 'pglite' handle's db is the Drizzle PGlite database; the shared
    // Database type only hides the driver-specific brand the migrator asks for.
    await migratePglite(handle.db as unknown as PgliteDatabase<Schema>, { migrationsFolder })
    return {}
  }
  const client = dedicatedConnection(handle)
  if (!client) throw new Error('migrateDatabase: the handle was not opened by openDatabase()')
  try {
    await client`select pg_advisory_lock(${MIGRATION_LOCK_KEY.toString()}::bigint)`
    const upgrade = await upgradeOriginalDatabase(client, { migrationsFolder, dryRun: options.dryRun, failAfterStep: options.failUpgradeAfterStep })
    if (upgrade) (options.log ?? console.log)(formatReport(upgrade))
    if (!options.dryRun) {
      await prepareActivityPartitioning(client)
      await migratePostgres(drizzlePostgres({ client }), { migrationsFolder })
    }
    await client`select pg_advisory_unlock(${MIGRATION_LOCK_KEY.toString()}::bigint)`
    return { upgrade }
  } finally {
    // Ending the session also drops the lock if the migration failed.
    await client.end({ timeout: 5 })
  }
}

/**
 * The slow half of migration 0002 (activity_log partitioned), done beforehand in
 * statements of their own so that no exclusive lock is held while a large table is
 * scanned: the migration itself runs in the migrator's one transaction, where every
 * lock lasts until the commit. On an unpartitioned activity_log this adds a CHECK
 * (created_at < start of next UTC month) NOT VALID (a brief exclusive lock, no scan),
 * validates it (a scan that lets reads and writes go on) and builds the unique index
 * on (log_id, created_at) CONCURRENTLY. The migration then finds both and only
 * renames and attaches (docs/activity-log.md). Idempotent; a no-op once partitioned.
 */
export async function prepareActivityPartitioning (client: postgres.Sql): Promise<void> {
  const [table] = await client<Array<{ kind: string }>>`select relkind as kind from pg_class where oid = to_regclass('public.activity_log')`
  if (table?.kind !== 'r') return
  const [check] = await client<Array<{ validated: boolean }>>`select convalidated as validated from pg_constraint
    where conrelid = 'public.activity_log'::regclass and conname = 'activity_log_legacy_range'`
  if (!check) {
    // At least an hour before the boundary, so rows written during the conversion still fit.
    const [{ boundary }] = await client<Array<{ boundary: string }>>`select to_char(date_trunc('month', (now() + interval '1 hour') at time zone 'UTC') + interval '1 month', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') as boundary`
    await client.unsafe(`alter table activity_log add constraint activity_log_legacy_range check (created_at < '${boundary}'::timestamptz) not valid`)
  }
  if (!check?.validated) await client`alter table activity_log validate constraint activity_log_legacy_range`
  const [index] = await client<Array<{ valid: boolean }>>`select indisvalid as valid from pg_index where indexrelid = to_regclass('public.activity_log_legacy_pkey')`
  if (index && !index.valid) await client`drop index concurrently activity_log_legacy_pkey`
  if (!index?.valid) await client`create unique index concurrently activity_log_legacy_pkey on activity_log (log_id, created_at)`
}

async function main (): Promise<void> {
  await loadDotenv()
  const config = loadConfig()
  let handle: DatabaseHandle
  try {
    handle = await openDatabase({ url: config.DATABASE_URL, dataDir: config.DATA_DIR, poolMax: 1 })
  } catch (error) {
    if (!(error instanceof DataDirLockedError)) throw error
    const report = reportHeldFolder('migrate', error, appliedState())
    if (report.out) console.log(report.out)
    if (report.err) console.error(report.err)
    process.exitCode = report.code
    return
  }
  try {
    const dryRun = process.argv.includes('--dry-run')
    const { upgrade } = await migrateDatabase(handle, { dryRun })
    if (!dryRun) console.log(`migrations applied (${handle.driver})`)
    else if (!upgrade) console.log(`dry run: not a database of the original Express/Prisma project, nothing to upgrade; no migration applied (${handle.driver})`)
  } finally {
    await handle.close()
  }
}

if (isMainModule(import.meta.url)) {
  main().catch((error: unknown) => {
    console.error(`migrate failed: ${errorMessage(error)}`)
    process.exitCode = 1
  })
}
