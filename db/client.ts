import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import type { PGlite } from '@electric-sql/pglite'
import { sql, type SQL } from 'drizzle-orm'
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core'
import { drizzle as drizzlePostgres } from 'drizzle-orm/postgres-js'
import postgres from 'postgres'
import * as schema from './schema/index.ts'
import { acquireDataDirLock, removeStalePostmasterPid } from './pglite-lock.ts'

/**
 * The database both drivers give: postgres.js in production, PGlite embedded.
 * Repositories type against this, so the same code runs on either.
 */
export type Database = PgDatabase<PgQueryResultHKT, typeof schema>
export type Schema = typeof schema

export interface DatabaseHandle {
  db: Database
  driver: 'pglite' | 'postgres'
  /** Throws when the database cannot answer (readiness probes). */
  ping: () => Promise<void>
  /** Ends the pool or closes the PGlite instance this handle opened; idempotent. */
  close: () => Promise<void>
  stats: () => { driver: string, poolMax: number }
  /**
   * Embedded, opened from a folder: how its database came to be. `template`: a new
   * folder loaded from the local template (db/template.ts); `initdb`: a new folder
   * made from scratch, `reason` saying why not from the template; `existing`.
   */
  embeddedStart?: { from: 'template' | 'initdb' | 'existing', reason?: string }
}

export interface OpenDatabaseOptions {
  /** PostgreSQL URL; unset = embedded PGlite. */
  url?: string
  /** Embedded mode keeps its database in `${dataDir}/pglite`. */
  dataDir: string
  /** Connections per process (postgres.js). */
  poolMax: number
  /** An open PGlite the caller owns (tests clone one from a template); never closed here. */
  pglite?: PGlite
  /** How long opening a PostgreSQL connection may take before the query fails (default 5 s). */
  connectTimeoutSeconds?: number
  /** Embedded: where a new folder's template is looked for (default: db/template.ts's); false: always initdb. */
  templateDir?: string | false
}

/**
 * Rows of a raw `sql` query on either driver. `db.execute()` is typed
 * `unknown` on the shared Database type because postgres.js returns an array
 * of rows and PGlite an object with `rows`; this gives both as an array.
 */
export async function executeRows<T extends Record<string, unknown>> (db: Database, query: SQL): Promise<T[]> {
  const result = await db.execute(query) as unknown
  return (Array.isArray(result) ? [...result] : (result as { rows: T[] }).rows) as T[]
}

/**
 * Prepared statements by shape (which filters, columns or sort a call uses), built
 * on first use: `statement(key, build)` returns the one built for `key`, calling
 * `build(n)` (n: a number for its name) the first time. Drizzle builds a query's SQL
 * on every call otherwise, and PostgreSQL parses and plans an unprepared one on every
 * call. At most `max` shapes are kept; past that, statements are built per call.
 */
export function statementCache<T> (max = 256): (key: string, build: (n: number) => T) => T {
  const statements = new Map<string, T>()
  return (key, build) => {
    let statement = statements.get(key)
    if (statement === undefined) {
      statement = build(statements.size)
      if (statements.size < max) statements.set(key, statement)
    }
    return statement
  }
}

const postgresOptions = (max: number, connectTimeout = 5): postgres.Options<Record<string, postgres.PostgresType>> => ({
  max,
  // Idle connections go back after 30 s, so a burst does not pin the server's slots.
  idle_timeout: 30,
  // A down database must fail requests quickly (503), not hang them (SR-40).
  connect_timeout: connectTimeout,
  // NOTICEs (e.g. "relation already exists, skipping" from migrations) are not errors.
  onnotice: () => {},
  // postgres.js would look up every array type on each new connection, in a promise
  // nothing awaits: a connection lost during that lookup (the server going away at
  // that moment) rejected it unhandled and took the process down (SR-40; a CI run
  // lost an API instance that way). The app reads no PostgreSQL arrays: aggregates
  // come back as jsonb.
  fetch_types: false,
  prepare: true,
  connection: { application_name: 'fastify-auth-backend' }
})

// The URL stays out of the handle (which plugins decorate onto the app and
// might log); only this module and dedicatedConnection() can see it.
const urls = new WeakMap<DatabaseHandle, string>()

/** Opens postgres.js when `url` is set, else the embedded PGlite. */
export async function openDatabase (opts: OpenDatabaseOptions): Promise<DatabaseHandle> {
  if (opts.url) return openPostgres(opts.url, opts.poolMax, opts.connectTimeoutSeconds)
  if (opts.pglite) return wrapPglite(opts.pglite, async () => {})
  return openEmbedded(path.join(opts.dataDir, 'pglite'), opts.templateDir)
}

/**
 * A separate single-connection client with the pool's settings (postgres only;
 * undefined for PGlite). Session-level state such as an advisory lock needs one
 * connection that no pooled query can share. The caller ends it.
 */
export function dedicatedConnection (handle: DatabaseHandle): postgres.Sql | undefined {
  const url = urls.get(handle)
  return url === undefined ? undefined : postgres(url, postgresOptions(1))
}

function openPostgres (url: string, poolMax: number, connectTimeout?: number): DatabaseHandle {
  // postgres.js connects lazily: opening succeeds while the server is down and
  // the app recovers by itself once it is back (SR-40).
  const client = postgres(url, postgresOptions(poolMax, connectTimeout))
  const db = drizzlePostgres({ client, schema })
  let closed: Promise<void> | undefined
  const handle: DatabaseHandle = {
    db,
    driver: 'postgres',
    ping: async () => { await db.execute(sql`select 1`) },
    close: () => (closed ??= client.end({ timeout: 5 })),
    stats: () => ({ driver: 'postgres', poolMax })
  }
  urls.set(handle, url)
  return handle
}

/**
 * PostgreSQL settings of the embedded database. Its buffer pool lives in the
 * WASM memory and is zeroed (so resident) at start: the default 128 MB made an
 * idle embedded instance weigh over 350 MB. One process, one backend and small
 * data sets need far less; the operating system's page cache still holds the
 * files (PGlite reads them through Node's fs).
 */
export const embeddedSettings = ['-c', 'shared_buffers=16MB']

async function openEmbedded (folder: string, templateDir?: string | false): Promise<DatabaseHandle> {
  mkdirSync(folder, { recursive: true })
  // PGlite takes no lock of its own: two processes on one folder would both
  // write and corrupt it (e.g. `npm run create-admin` while `npm start` runs).
  const release = await acquireDataDirLock(folder)
  try {
    removeStalePostmasterPid(folder)
    const { pglite, start } = await startPglite(folder, templateDir)
    const handle = await wrapPglite(pglite, async () => {
      try {
        await pglite.close()
      } finally {
        release()
      }
    })
    return Object.assign(handle, { embeddedStart: start })
  } catch (error) {
    release()
    throw error
  }
}

/**
 * Starts PGlite on `folder` (its lock held). A new folder is loaded from the local
 * template when a valid one exists, else made by initdb (the migrations and the
 * seed then run at start as usual). A marker beside the folder (`<folder>.loading`)
 * exists while a template loads: found at the next start, the load was cut short
 * (crash, kill) and the folder, which never served a query, is emptied and loaded again.
 */
async function startPglite (folder: string, templateDir?: string | false): Promise<{ pglite: PGlite, start: NonNullable<DatabaseHandle['embeddedStart']> }> {
  // Loaded on demand: a PostgreSQL deployment never pays for the WASM build.
  const { PGlite } = await import('@electric-sql/pglite')
  const options = { dataDir: folder, startParams: [...PGlite.defaultStartParams, ...embeddedSettings] }
  const open = async () => {
    const pglite = new PGlite(options)
    try {
      await pglite.waitReady
    } catch (error) {
      await pglite.close().catch(() => {})
      throw error
    }
    return pglite
  }
  const loading = `${path.resolve(folder)}.loading`
  if (existsSync(loading)) emptyFolder(folder)
  if (existsSync(path.join(folder, 'PG_VERSION'))) return { pglite: await open(), start: { from: 'existing' } }
  let reason = 'the template is turned off'
  if (templateDir !== false && readdirSync(folder).length > 0) reason = 'the folder is not empty'
  else if (templateDir !== false) {
    const { readTemplate, unpackTemplate } = await import('./template.ts')
    const found = readTemplate(templateDir)
    if (!found.ok) reason = found.reason
    else {
      writeFileSync(loading, '')
      try {
        unpackTemplate(found.gz, folder)
        const pglite = await open()
        rmSync(loading, { force: true })
        return { pglite, start: { from: 'template' } }
      } catch (error) {
        emptyFolder(folder)
        rmSync(loading, { force: true })
        reason = `the template ${found.file} did not load (${error instanceof Error ? error.message : String(error)})`
      }
    }
  }
  return { pglite: await open(), start: { from: 'initdb', reason } }
}

function emptyFolder (folder: string): void {
  for (const entry of readdirSync(folder)) rmSync(path.join(folder, entry), { recursive: true, force: true })
}

async function wrapPglite (pglite: PGlite, shutdown: () => Promise<void>): Promise<DatabaseHandle> {
  const { drizzle: drizzlePglite } = await import('drizzle-orm/pglite')
  const db = drizzlePglite({ client: pglite, schema })
  let closed: Promise<void> | undefined
  return {
    db,
    driver: 'pglite',
    ping: async () => { await db.execute(sql`select 1`) },
    close: () => (closed ??= shutdown()),
    // One WASM backend: every query runs on it in turn.
    stats: () => ({ driver: 'pglite', poolMax: 1 })
  }
}
