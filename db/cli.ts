import { realpathSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { AppliedState, DataDirLockedError } from './pglite-lock.ts'

/** True when the module with this `import.meta.url` is the script node was started with. */
export function isMainModule (moduleUrl: string): boolean {
  const script = process.argv[1]
  if (!script) return false
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(moduleUrl))
  } catch {
    return false
  }
}

/** Reads `.env` like the server does, so a CLI sees the same settings. */
export async function loadDotenv (): Promise<void> {
  await import('dotenv/config')
}

export const errorMessage = (error: unknown) => (error instanceof Error ? error.message : String(error))

export interface HeldFolderReport { code: number, out?: string, err?: string }

/**
 * What `db:migrate` or `db:seed` answer when the embedded folder is held by
 * another process (PGlite serves one process at a time). A server applies the
 * migrations and the default data at each start and records which in its lock
 * (`applied`); when that matches this checkout (`mine`), the script's work is
 * already done: exit 0. A server that started on older code, or one still
 * starting, or another script: exit 1, saying what to do.
 */
export function reportHeldFolder (script: 'migrate' | 'seed', error: DataDirLockedError, mine: AppliedState): HeldFolderReport {
  const applied = error.holder?.applied
  const who = `the server running on ${error.folder} (process ${error.pid})`
  if (!applied) {
    return { code: 1, err: `${script}: ${error.message} A server applies migrations and default data itself once started.` }
  }
  if (applied.migration !== mine.migration) {
    return {
      code: 1,
      err: `${script}: ${who} applied migrations up to ${applied.migration} at its start; this checkout has up to ${mine.migration}. ` +
        'Restart the server: it applies them at start (the embedded database serves one process at a time).'
    }
  }
  if (script === 'migrate') {
    return { code: 0, out: `migrate: nothing to do: ${who} applied every migration (up to ${applied.migration}) at its start` }
  }
  if (applied.defaults !== mine.defaults) {
    return { code: 1, err: `seed: ${who} started with other default permissions and groups than this checkout's. Restart the server: it applies them at start.` }
  }
  return { code: 0, out: `seed: nothing to do: ${who} applied the default permissions and groups at its start` }
}
