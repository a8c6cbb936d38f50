import { existsSync, linkSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs'
import { hostname } from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

/**
 * An exclusive, crash-tolerant lock on a PGlite data folder.
 *
 * The lock is a file beside the folder (`<folder>.lock`, so a dump or copy of
 * the folder never carries it) holding the owner's pid, host and boot id. A
 * lock left by a process that died (SIGKILL, OOM, power loss) is taken over:
 * its pid is gone, the machine rebooted since, it names another host (a
 * replaced container on the same volume), or it names this very pid while this
 * process holds no lock (a container restart where the app is pid 1 again).
 */

/**
 * What a running server has applied to the folder since it took the lock:
 * the last migration of its journal and a hash of its default data. A CLI
 * that finds the folder held compares these with its own checkout's to tell
 * whether its work is already done (db:migrate, db:seed).
 */
export interface AppliedState { migration: string, defaults: string }

export interface LockInfo { pid: number, host: string, boot: string | null, at: string, applied?: AppliedState }

// lock file -> the content we wrote into it
const held = new Map<string, string>()
let exitHookInstalled = false

export class DataDirLockedError extends Error {
  constructor (readonly folder: string, readonly lockFile: string, readonly pid: number, readonly holder?: LockInfo) {
    super(`The embedded database ${folder} is in use by process ${pid}; stop that process first ` +
      `(or set DATABASE_URL). If no such process runs, delete ${lockFile}.`)
    this.name = 'DataDirLockedError'
  }
}

/** Takes the lock of `folder` or throws DataDirLockedError; returns the release function. */
export async function acquireDataDirLock (folder: string): Promise<() => void> {
  const lockFile = `${path.resolve(folder)}.lock`
  if (held.has(lockFile)) throw new DataDirLockedError(folder, lockFile, process.pid)
  const mine: LockInfo = { pid: process.pid, host: hostname(), boot: bootId(), at: new Date().toISOString() }
  const content = JSON.stringify(mine) + '\n'
  for (let attempt = 0; attempt < 30; attempt++) {
    try {
      writeFileSync(lockFile, content, { flag: 'wx', mode: 0o600 })
      held.set(lockFile, content)
      installExitHook()
      let released = false
      return () => {
        if (released) return
        released = true
        // recordAppliedState() may have replaced what was written at first.
        const current = held.get(lockFile) ?? content
        held.delete(lockFile)
        removeIfOurs(lockFile, current)
      }
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
    }
    const seen = readLock(lockFile)
    if (seen === undefined) {
      await sleep(100)
      continue
    }
    if (seen.info && isLive(seen.info)) throw new DataDirLockedError(folder, lockFile, seen.info.pid, seen.info)
    takeOverStale(lockFile, seen.raw)
  }
  throw new Error(`Could not take the lock ${lockFile}: it keeps changing (another process is starting on the same folder)`)
}

/**
 * Records in the lock of `folder`, which this process holds, what it has
 * applied (see AppliedState). The file is replaced whole (write aside, then
 * rename), so a reader never sees it half written. Does nothing when this
 * process does not hold the lock (e.g. a test's in-memory database).
 */
export function recordAppliedState (folder: string, applied: AppliedState): void {
  const lockFile = `${path.resolve(folder)}.lock`
  const content = held.get(lockFile)
  if (content === undefined) return
  const next = JSON.stringify({ ...(JSON.parse(content) as LockInfo), applied }) + '\n'
  const aside = `${lockFile}.next-${process.pid}`
  writeFileSync(aside, next, { mode: 0o600 })
  renameSync(aside, lockFile)
  held.set(lockFile, next)
}

/**
 * Postgres leaves `postmaster.pid` behind when killed. PGlite 0.5.16 starts
 * despite it (our crash test shows it), but other builds have been reported to
 * abort with `RuntimeError: Aborted()`. Once we hold the folder's lock no other
 * backend can be using the folder, so any such file is stale.
 */
export function removeStalePostmasterPid (folder: string): void {
  const pidFile = path.join(folder, 'postmaster.pid')
  if (existsSync(pidFile)) unlinkSync(pidFile)
}

function readLock (lockFile: string): { raw: string, info: LockInfo | null } | undefined {
  let raw: string
  try {
    raw = readFileSync(lockFile, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw error
  }
  try {
    const info = JSON.parse(raw) as LockInfo
    return { raw, info: Number.isInteger(info.pid) && info.pid > 0 ? info : null }
  } catch {
    // Empty or torn: a crash between creating and writing it, or another
    // process is writing it right now. Only the former lasts; treat it as stale
    // once it is older than the write could take.
    return isFresh(lockFile) ? undefined : { raw, info: null }
  }
}

function isFresh (lockFile: string): boolean {
  try {
    return Date.now() - statSync(lockFile).mtimeMs < 2000
  } catch {
    return false
  }
}

function isLive (info: LockInfo): boolean {
  if (info.host !== hostname()) return false
  const boot = bootId()
  if (boot !== null && info.boot !== null && info.boot !== boot) return false
  if (info.pid === process.pid) return false
  try {
    process.kill(info.pid, 0)
    return true
  } catch (error) {
    // EPERM: the pid exists but belongs to another user; assume it is the owner.
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/**
 * Moves the stale lock aside, atomically. If what was moved is not the stale
 * file we judged (another process took the lock over in the meantime), put it
 * back with link(), which never overwrites, and let the next attempt see it.
 */
function takeOverStale (lockFile: string, staleRaw: string): void {
  const aside = `${lockFile}.stale-${process.pid}`
  try {
    renameSync(lockFile, aside)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return
    throw error
  }
  try {
    if (readFileSync(aside, 'utf8') !== staleRaw) {
      try {
        linkSync(aside, lockFile)
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
      }
    }
  } finally {
    unlinkSync(aside)
  }
}

function removeIfOurs (lockFile: string, content: string): void {
  try {
    if (readFileSync(lockFile, 'utf8') === content) unlinkSync(lockFile)
  } catch {
    // Already gone: nothing to release.
  }
}

function installExitHook (): void {
  if (exitHookInstalled) return
  exitHookInstalled = true
  // A process that exits without closing the database (process.exit in a CLI)
  // leaves no lock behind; the next opener would take a stale one over anyway,
  // but a lock file that names a live pid (reused later) would block it.
  process.on('exit', () => {
    for (const [lockFile, content] of held) removeIfOurs(lockFile, content)
  })
}

let cachedBootId: string | null | undefined
function bootId (): string | null {
  if (cachedBootId !== undefined) return cachedBootId
  try {
    cachedBootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
  } catch {
    cachedBootId = null
  }
  return cachedBootId
}
