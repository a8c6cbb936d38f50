import fp from 'fastify-plugin'
import { eq, sql } from 'drizzle-orm'
import { authCacheState } from '../../../db/schema/index.ts'
import { AppError } from '../../../schemas/errors.ts'

/**
 * Decides which auth-state cache entries (`s:<sid>`, `u:<uid>`) may be trusted, so
 * a revocation can never be undone by the cache (SR-20, SR-21, SR-41).
 *
 * Every entry carries the generation it was written under; an entry older than
 * `trusted` is treated as missing (refilled from PostgreSQL). The current generation
 * lives in PostgreSQL (`auth_cache_state`) and is bumped
 * - when a write of auth state to the cache fails (a revocation the cache could not
 *   take: Redis down or partitioned), before the change is acknowledged;
 * - when an instance connects to a Redis server whose run_id differs from the one
 *   recorded (a restart, possibly from an older snapshot, or a failover).
 * Each instance stops trusting the cache the moment its connection is lost, and
 * trusts it again only after it has re-read (or bumped) the generation once the
 * connection is ready; until then requests are checked against PostgreSQL. It also
 * re-reads the generation every POLL_MS, so an instance that kept its connection
 * learns within that time about a revocation another instance could not write.
 *
 * The per-request cost is reading one number: no round trip is added.
 */
export interface AuthCacheGeneration {
  /** Entries written under an older generation are not trusted; -1: trust nothing now. */
  readonly trusted: number
  /** The newest generation known, to stamp entries computed from PostgreSQL from now on. */
  readonly known: number
  /**
   * A write of auth state to the cache failed: what the cache holds must not be
   * trusted again. Resolves once the bump is durable in PostgreSQL; rejects with
   * 503 when it could not be made (it is retried in the background meanwhile).
   */
  writeFailed: () => Promise<void>
}

declare module 'fastify' {
  interface FastifyInstance { authCache: AuthCacheGeneration }
}

const POLL_MS = 1000
const ROW_ID = 1

export default fp(async (fastify) => {
  const { db, store } = fastify
  if (store.kind === 'memory') {
    // The in-process store cannot fail a write or come back with older data.
    fastify.decorate('authCache', { trusted: 0, known: 0, writeFailed: async () => {} })
    return
  }

  let known = 0
  let synced = false
  /** Bumped on every lost connection, so a sync that started before a loss does not mark the new connection trusted. */
  let epoch = 0
  let bumpsOwed = 0
  let bumpsRunning = 0
  const state = { trusted: -1, known: 0, writeFailed }
  const update = () => {
    state.known = known
    state.trusted = synced && bumpsOwed === 0 && bumpsRunning === 0 ? known : -1
  }
  const learn = (generation: number) => { if (generation > known) known = generation }

  async function bump (runId?: string | null) {
    const [row] = await db.insert(authCacheState)
      .values({ id: ROW_ID, generation: 1, ...(runId !== undefined ? { redis_run_id: runId } : {}) })
      .onConflictDoUpdate({
        target: authCacheState.id,
        set: { generation: sql`${authCacheState.generation} + 1`, updated_at: sql`now()`, ...(runId !== undefined ? { redis_run_id: runId } : {}) },
        // On a (re)connect, only the first instance to see a new server bumps; the others just read.
        ...(runId !== undefined ? { setWhere: sql`${authCacheState.redis_run_id} is distinct from ${runId}` } : {})
      })
      .returning({ generation: authCacheState.generation })
    return row?.generation
  }

  async function read () {
    const [row] = await db.select({ generation: authCacheState.generation }).from(authCacheState).where(eq(authCacheState.id, ROW_ID))
    return row?.generation ?? 0
  }

  let syncing: Promise<void> | null = null
  function sync () {
    syncing ??= (async () => {
      const at = epoch
      try {
        // An unknown server (INFO refused) counts as a new one every time.
        const runId = (await store.serverId()) ?? `unknown:${Date.now()}:${Math.random()}`
        learn((await bump(runId)) ?? await read())
        if (at === epoch && store.connected) synced = true
      } catch (err) {
        fastify.log.warn({ err }, 'auth cache generation could not be checked; auth state is read from PostgreSQL meanwhile')
      } finally {
        update()
        syncing = null
      }
    })()
    return syncing
  }

  async function writeFailed () {
    bumpsRunning++
    update() // this instance stops trusting the cache at once
    try {
      learn((await bump())!)
    } catch (err) {
      bumpsOwed++
      fastify.log.error({ err }, 'auth cache generation could not be bumped after a failed cache write; retrying')
      throw new AppError('SERVICE_UNAVAILABLE', { cause: err })
    } finally {
      bumpsRunning--
      update()
    }
  }

  async function poll () {
    try {
      if (bumpsOwed > 0) {
        learn((await bump())!)
        bumpsOwed = 0
      } else {
        learn(await read())
      }
      update()
      if (!synced && store.connected) await sync()
    } catch {
      // PostgreSQL is unreachable: nothing changes until the next poll.
    }
  }

  store.onConnection((event) => {
    if (event === 'lost') {
      epoch++
      synced = false
      update()
    } else {
      sync().catch(() => {})
    }
  })
  if (store.connected) await sync()

  let polling = false
  const timer = setInterval(() => {
    if (polling) return
    polling = true
    poll().finally(() => { polling = false })
  }, POLL_MS)
  timer.unref()
  fastify.addHook('onClose', async () => clearInterval(timer))

  fastify.decorate('authCache', state)
}, { name: 'auth-cache', dependencies: ['db', 'store'] })
