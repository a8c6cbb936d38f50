import os from 'node:os'
import { randomBytes } from 'node:crypto'
import fp from 'fastify-plugin'
import Tinypool from 'tinypool'
import { AppError } from '../../../schemas/errors.ts'
import type { HashParams, HashTask, VerifyResult, VerifyTask } from '../../../workers/password.ts'
import { workerEntry } from '../http/worker-pool.ts'
import { commonPasswords, isTooLong, passwordProblem } from './password-policy.ts'

/**
 * Password policy and hashing (SR-1 to SR-5, SR-7). Length and the common-password
 * list are checked on the event loop (cheap); Argon2id runs in a tinypool of
 * worker threads so a burst of logins never blocks request handling.
 */
export interface PasswordService {
  /** Throws PASSWORD_TOO_SHORT, PASSWORD_TOO_LONG or WEAK_PASSWORD; never hashes. */
  check: (password: string) => void
  /**
   * An Argon2id hash with the configured parameters; refuses an over-long password
   * before hashing. Applies no other rule, so a legacy password that `check` would
   * now refuse can still be re-hashed at login; call `check` first for new passwords.
   */
  hash: (password: string) => Promise<string>
  /**
   * Checks a password against a stored hash (Argon2id, or legacy bcrypt which always
   * needs a rehash and never matches an input of 72 bytes or more, SR-2). A null hash
   * (unknown user) still costs one real Argon2 verification.
   */
  verify: (hash: string | null | undefined, password: string) => Promise<VerifyResult>
  /** The thread id of a pool worker; 0 would mean the main thread. */
  workerThreadId: () => Promise<number>
  /** Worker threads alive now (none until the first task, none again after a minute idle). */
  threads: () => number
  /** Tasks handed to the worker pool since start, by kind (metrics, tests). */
  readonly tasks: Readonly<Record<'hash' | 'verify' | 'threadId', number>>
}

declare module 'fastify' {
  interface FastifyInstance { passwords: PasswordService }
}

// Threads start with the first login and leave after a minute without one: an
// idle instance holds no hashing thread (each holds tens of MB of memory).
export const IDLE_THREAD_MS = 60_000

/**
 * An Argon2id PHC string with the live parameters, a random salt and a random
 * digest. Verifying any password against it costs exactly what verifying a
 * real hash with these parameters does (the digest length is the default 32
 * bytes), and no password matches it: nobody knows a preimage of random bytes.
 */
export function unmatchableHash (params: HashParams): string {
  const b64 = (bytes: number) => randomBytes(bytes).toString('base64').replace(/=+$/, '')
  return `$argon2id$v=19$m=${params.memoryCost},t=${params.timeCost},p=${params.parallelism}$${b64(16)}$${b64(32)}`
}

export default fp(async (fastify) => {
  const config = fastify.config
  const min = config.PASSWORD_MIN_LENGTH
  const max = config.PASSWORD_MAX_LENGTH
  const params: HashParams = { memoryCost: config.ARGON2_MEMORY_KIB, timeCost: config.ARGON2_TIME_COST, parallelism: config.ARGON2_PARALLELISM }
  const common = commonPasswords()
  const tooLong = (password: string) => isTooLong(password, max)

  function check (password: string): void {
    const problem = passwordProblem(password, { min, max }, common)
    if (problem === 'WEAK_PASSWORD') throw new AppError(problem)
    if (problem) throw new AppError(problem, { params: { min, max } })
  }

  const pool = new Tinypool({
    ...workerEntry('password', { mustExist: true }),
    minThreads: 0,
    maxThreads: config.HASH_POOL_THREADS || os.availableParallelism(),
    idleTimeout: IDLE_THREAD_MS
  })
  // A worker that dies also fails its task (the caller sees that); without a
  // listener the pool's 'error' event would take the whole process down.
  pool.on('error', (err: unknown) => fastify.log.error({ err }, 'password worker failed'))
  // tinypool leaves a task sent after destroy() pending forever; refuse it instead.
  let closed = false
  fastify.addHook('onClose', async () => {
    closed = true
    await pool.destroy()
  })

  const tasks = { hash: 0, verify: 0, threadId: 0 }
  async function run<T> (name: keyof typeof tasks, task?: HashTask | VerifyTask): Promise<T> {
    if (closed) throw new AppError('SERVICE_UNAVAILABLE')
    tasks[name]++
    return pool.run(task, { name })
  }
  const runHash = (task: HashTask) => run<string>('hash', task)
  const runVerify = (task: VerifyTask) => run<VerifyResult>('verify', task)

  // Verified in place of a missing hash, so that an unknown user costs what a known one does (SR-7).
  const dummyHash = unmatchableHash(params)

  async function hash (password: string): Promise<string> {
    if (tooLong(password)) throw new AppError('PASSWORD_TOO_LONG', { params: { min, max } })
    return runHash({ password, params })
  }

  async function verify (stored: string | null | undefined, password: string): Promise<VerifyResult> {
    if (tooLong(password)) return { ok: false, needsRehash: false }
    if (!stored) {
      await runVerify({ hash: dummyHash, password, params })
      return { ok: false, needsRehash: false }
    }
    return runVerify({ hash: stored, password, params })
  }

  const service: PasswordService = {
    check,
    hash,
    verify,
    workerThreadId: () => run<number>('threadId'),
    threads: () => pool.threads.length,
    tasks
  }
  fastify.decorate('passwords', service)
}, { name: 'passwords' })
