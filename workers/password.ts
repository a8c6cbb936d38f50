import { threadId as currentThreadId } from 'node:worker_threads'
import { Algorithm, Version, hash as argon2Hash, hashSync as argon2HashSync, parseOptions, verify as argon2Verify, verifySync as argon2VerifySync } from '@node-rs/argon2'
import bcrypt from 'bcryptjs'

/**
 * Password hashing as tinypool tasks (`hash`, `verify`, `threadId`) plus the two
 * promise helpers other code imports directly. Pure: no Fastify, so the file
 * loads in a worker thread without the app.
 */

/** Argon2id parameters; defaults follow OWASP (19 MiB, t=2, p=1). */
export interface HashParams { memoryCost: number, timeCost: number, parallelism: number }
export const defaultHashParams: HashParams = { memoryCost: 19456, timeCost: 2, parallelism: 1 }

export interface HashTask { password: string, params: HashParams }
export interface VerifyTask { hash: string, password: string, params: HashParams }
export interface VerifyResult { ok: boolean, needsRehash: boolean }

// The same password typed on two keyboards can arrive as different code point
// sequences (é precomposed or e + combining accent); NFC makes them one.
const normalize = (password: string) => password.normalize('NFC')
const argon2Options = (params: HashParams) => ({ algorithm: Algorithm.Argon2id, ...params })

const ARGON2 = /^\$argon2(id|i|d)\$/
// What bcrypt, bcryptjs and PHP wrote; the old Express/Prisma project stored these.
const BCRYPT = /^\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}$/
/** bcrypt ignores every byte past the 72nd: at this length a match proves no more than the prefix. */
const BCRYPT_MAX_BYTES = 72

const rejected: VerifyResult = { ok: false, needsRehash: false }

/** Task: an Argon2id PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`). */
export function hash ({ password, params }: HashTask): string {
  // Sync on purpose: inside a pool worker the thread itself should do the work.
  // The async binding would hand it to libuv's small process-wide pool, which
  // file system and DNS calls also need, and ignore the pool's size limit.
  return argon2HashSync(normalize(password), argon2Options(params))
}

/**
 * Task: checks a password against a stored Argon2 or legacy bcrypt hash.
 * Never throws: a hash it cannot read is a failed verification, not a 500.
 */
export function verify ({ hash: stored, password, params }: VerifyTask): VerifyResult {
  try {
    if (ARGON2.test(stored)) {
      if (!argon2VerifySync(stored, normalize(password))) return rejected
      return { ok: true, needsRehash: argon2NeedsRehash(stored, params) }
    }
    if (BCRYPT.test(stored)) {
      // bcrypt only ever saw the first 72 bytes and no normalization, so a match
      // of an input of 72 bytes or more proves those 72 bytes only: the prefix of
      // a 100-byte password, or it plus any junk, would log in and be rehashed to
      // Argon2id, locking the owner out of the real password (SR-2). Such an
      // input is refused like a wrong password, after the same work; the owner
      // of a long legacy password resets it. A shorter match moves to Argon2id (SR-5).
      const matches = bcrypt.compareSync(password, stored)
      if (Buffer.byteLength(password, 'utf8') >= BCRYPT_MAX_BYTES) return rejected
      return matches ? { ok: true, needsRehash: true } : rejected
    }
  } catch {
    // A damaged hash (bad base64, impossible parameters) lands here.
  }
  return rejected
}

/** Task: the id of the thread that runs the tasks, so tests can see it is not the main one (0). */
export function threadId (): number {
  return currentThreadId
}

function argon2NeedsRehash (stored: string, params: HashParams): boolean {
  const used = parseOptions(stored)
  return used.algorithm !== Algorithm.Argon2id ||
    used.version !== Version.V0x13 ||
    used.memoryCost !== params.memoryCost ||
    used.timeCost !== params.timeCost ||
    used.parallelism !== params.parallelism
}

/** Hashes a password with Argon2id on libuv's pool; for callers outside the worker pool (seed scripts, CLIs). */
export async function hashPassword (password: string, params: HashParams = defaultHashParams): Promise<string> {
  return argon2Hash(normalize(password), argon2Options(params))
}

/** True when the password matches an Argon2 or legacy bcrypt hash; false for any hash it cannot read. */
export async function verifyPassword (stored: string, password: string): Promise<boolean> {
  if (ARGON2.test(stored)) return argon2Verify(stored, normalize(password)).catch(() => false)
  return verify({ hash: stored, password, params: defaultHashParams }).ok
}
