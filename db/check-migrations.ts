import { spawnSync } from 'node:child_process'
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

/**
 * Fails (exit 1) when db/schema has changes that no migration covers.
 *
 * `drizzle-kit check` only checks the migration files against each other, not
 * against the schema, so this runs `drizzle-kit generate` into a scratch copy
 * of db/migrations and fails if that produced anything. The real folder is
 * never touched. Exit 2 when drizzle-kit itself could not run.
 */

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const migrations = path.join(root, 'db', 'migrations')

function listFiles (dir: string, prefix = ''): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => entry.isDirectory()
    ? listFiles(path.join(dir, entry.name), `${prefix}${entry.name}/`)
    : [`${prefix}${entry.name}`]).sort()
}

function check (scratch: string): number {
  cpSync(migrations, scratch, { recursive: true })
  // drizzle-kit prefixes `--out` with "./", so it must be relative to the project.
  const before = new Set(listFiles(scratch))
  const kit = spawnSync(process.execPath, [
    path.join(root, 'node_modules', 'drizzle-kit', 'bin.cjs'), 'generate',
    '--dialect', 'postgresql', '--schema', './db/schema/index.ts', '--out', path.relative(root, scratch), '--name', 'unmigrated_changes'
  ], {
    cwd: root,
    encoding: 'utf8',
    // Without a TTY drizzle-kit refuses to ask its rename questions instead of waiting.
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 120_000
  })
  const added = listFiles(scratch).filter((file) => !before.has(file))
  if (`${kit.stdout}${kit.stderr}`.includes('Interactive prompts require a TTY')) {
    console.error('check-migrations: db/schema has changes without a migration (drizzle-kit asks whether something was renamed). Run `npm run db:generate -- --name <what_changed>` in a terminal and commit the result.')
    return 1
  }
  // drizzle-kit exits 0 even when it failed (e.g. an unreadable snapshot), so
  // "no changes" is believed only when it says so.
  if (added.length === 0 && !(kit.status === 0 && kit.stdout.includes('No schema changes'))) {
    console.error(`check-migrations: drizzle-kit generate did not finish (${kit.status === null ? 'timed out or waited for input' : `exit ${kit.status}`})\n${kit.stdout}${kit.stderr}`)
    return 2
  }
  if (added.length > 0) {
    console.error('check-migrations: db/schema has changes without a migration. Run `npm run db:generate -- --name <what_changed>` and commit the result.')
    for (const file of added.filter((f) => f.endsWith('.sql'))) {
      console.error(`\n--- would be ${file}:\n${readFileSync(path.join(scratch, file), 'utf8')}`)
    }
    return 1
  }
  console.log('check-migrations: the migrations match db/schema')
  return 0
}

const scratch = mkdtempSync(path.join(tmpdir(), 'migrations-check-'))
try {
  process.exitCode = check(scratch)
} finally {
  rmSync(scratch, { recursive: true, force: true })
}
