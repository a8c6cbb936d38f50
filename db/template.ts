import { createHash, randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { extract } from 'tar'
import { defaultGroups, defaultPermissions } from './defaults.ts'
import { resolveMigrationsFolder } from './migrate.ts'

/**
 * The local template of the embedded database: a dump of a PGlite data folder
 * after initdb, every migration and the default permissions and groups, made on
 * this machine (at `npm install`, or `npm run db:template`) and never committed.
 * A first embedded start unpacks it into the new folder and opens that as an
 * existing database instead of running initdb, the migrations and the seed.
 *
 * It lives in `node_modules/.cache/fastify-auth-backend/` (next to the PGlite it
 * belongs to, so a reinstall drops it), as `pglite-<version>-<key>.tar.gz` with a
 * `.json` beside it naming its key and sha256. The key covers the PGlite version
 * (a dump of another build does not open), the migration files and the default
 * data: a template whose key or checksum does not match is ignored and the start
 * falls back to initdb. What goes in comes from the migrations and db/defaults.ts
 * only, built in an in-memory database that never sees the configuration: no
 * user, no secret, nothing of a DATA_DIR (test/db/template.test.ts checks).
 *
 * What differs from a database migrated at first start: the template's initdb
 * identifiers, the default rows' ids and created_at (the build's), and the end of
 * activity_log_legacy (the month after the build; empty either way, later months
 * get their partitions from the activity maintenance at start).
 */

/** Bumped when what a template holds or how it is stored changes. */
const FORMAT = 1
const PREFIX = 'pglite-'

export interface TemplateMeta { format: number, key: string, pglite: string, sha256: string, bytes: number, builtAt: string }

export type TemplateLookup =
  | { ok: true, file: string, gz: Buffer }
  | { ok: false, reason: string }

/** The installed PGlite's folder and version. */
function pglitePackage (): { dir: string, version: string } {
  // The main entry is <package>/dist/index.js; the package's exports do not list package.json.
  const entry = createRequire(import.meta.url).resolve('@electric-sql/pglite')
  const dir = path.resolve(path.dirname(entry), '..')
  const { version } = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { version: string }
  return { dir, version }
}

/** `node_modules/.cache/fastify-auth-backend` of the node_modules that holds PGlite. */
export function defaultTemplateDir (): string {
  const nodeModules = path.resolve(pglitePackage().dir, '..', '..')
  return path.join(nodeModules, '.cache', 'fastify-auth-backend')
}

/** What the current checkout's template must be made of (hex, 16 characters). */
export function templateKey (): string {
  const hash = createHash('sha256').update(`format ${FORMAT}\0pglite ${pglitePackage().version}\0`)
  const walk = (dir: string, prefix: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      if (entry.isDirectory()) walk(path.join(dir, entry.name), `${prefix}${entry.name}/`)
      else hash.update(`${prefix}${entry.name}\0`).update(readFileSync(path.join(dir, entry.name))).update('\0')
    }
  }
  walk(resolveMigrationsFolder(), 'migrations/')
  hash.update(JSON.stringify({ defaultPermissions, defaultGroups }))
  return hash.digest('hex').slice(0, 16)
}

function templateFiles (dir: string, key: string): { tar: string, meta: string } {
  const version = pglitePackage().version.replace(/[^0-9a-z.]/gi, '')
  const base = path.join(dir, `${PREFIX}${version}-${key}`)
  return { tar: `${base}.tar.gz`, meta: `${base}.json` }
}

/**
 * The template of `key` in `dir`, checked: present, its metadata naming the same
 * key and PGlite version, and its bytes matching the recorded sha256. Otherwise
 * why not (the caller falls back to initdb). Never throws.
 */
export function readTemplate (dir?: string, key?: string): TemplateLookup {
  try {
    dir ??= defaultTemplateDir()
    key ??= templateKey()
    const files = templateFiles(dir, key)
    if (!existsSync(files.meta) || !existsSync(files.tar)) return { ok: false, reason: `no template for this schema in ${dir} (run \`npm run db:template\`)` }
    const meta = JSON.parse(readFileSync(files.meta, 'utf8')) as Partial<TemplateMeta>
    if (meta.format !== FORMAT || meta.key !== key || meta.pglite !== pglitePackage().version) return { ok: false, reason: `stale template ${files.meta}` }
    const gz = readFileSync(files.tar)
    if (gz.length !== meta.bytes || createHash('sha256').update(gz).digest('hex') !== meta.sha256) return { ok: false, reason: `corrupt template ${files.tar} (checksum mismatch)` }
    return { ok: true, file: files.tar, gz }
  } catch (error) {
    return { ok: false, reason: `unreadable template: ${error instanceof Error ? error.message : String(error)}` }
  }
}

/**
 * Writes a template (a gzip'ed tar of a data folder) and its metadata under `key`,
 * each written aside and renamed, the metadata last (a reader never sees a
 * template without its checksum); removes the other templates of `dir`.
 */
export function writeTemplate (gz: Uint8Array, dir = defaultTemplateDir(), key = templateKey()): string {
  mkdirSync(dir, { recursive: true })
  const files = templateFiles(dir, key)
  const meta: TemplateMeta = {
    format: FORMAT,
    key,
    pglite: pglitePackage().version,
    sha256: createHash('sha256').update(gz).digest('hex'),
    bytes: gz.length,
    builtAt: new Date().toISOString()
  }
  const tag = `${process.pid}.${randomBytes(4).toString('hex')}.partial`
  writeFileSync(`${files.tar}.${tag}`, gz)
  renameSync(`${files.tar}.${tag}`, files.tar)
  writeFileSync(`${files.meta}.${tag}`, JSON.stringify(meta, null, 2) + '\n')
  renameSync(`${files.meta}.${tag}`, files.meta)
  for (const name of readdirSync(dir)) {
    const file = path.join(dir, name)
    if (name.startsWith(PREFIX) && file !== files.tar && file !== files.meta && !name.endsWith('.partial')) rmSync(file, { force: true })
  }
  return files.tar
}

/**
 * Unpacks a checked template (readTemplate's `gz`) into the empty `folder`. Files
 * are written straight to disk (node-tar, streaming the gzip): PGlite's own
 * `loadDataDir` would copy the whole 40 MB tar through JavaScript memory three
 * times and keep the process's RSS higher after start. The dump was taken from a
 * running database, so its `postmaster.pid` goes (db/pglite-lock.ts says why).
 */
export function unpackTemplate (gz: Buffer, folder: string): void {
  const problems: string[] = []
  // TAR_ENTRY_INFO: the dump's paths are absolute ("/base/1/…"); they are made relative to `folder`.
  const onwarn = (code: string, message: string | Error) => { if (code !== 'TAR_ENTRY_INFO') problems.push(`${code}: ${String(message)}`) }
  extract({ cwd: folder, sync: true, onwarn }).end(gz)
  if (problems.length > 0) throw new Error(`unpacking failed: ${problems.slice(0, 3).join('; ')}`)
  if (!existsSync(path.join(folder, 'PG_VERSION'))) throw new Error('no database in it (PG_VERSION missing)')
  rmSync(path.join(folder, 'postmaster.pid'), { force: true })
}
