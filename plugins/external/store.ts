import fp from 'fastify-plugin'
import fastifyRedis from '@fastify/redis'
import { Redis } from 'ioredis'

/**
 * The key-value store with TTLs behind revocation caches, OTPs, lockouts and
 * counters: Redis when REDIS_URL is set (shared by every instance), otherwise an
 * in-process map (one instance only; refused in production cluster mode by config.ts).
 * Redis commands fail fast while Redis is down (no offline queue), so callers can
 * fail closed or fall back to Postgres instead of hanging (SR-41).
 */
export interface KeyValueStore {
  readonly kind: 'redis' | 'memory'
  get: (key: string) => Promise<string | null>
  mget: (keys: string[]) => Promise<Array<string | null>>
  /** ttlMs omitted = no expiry. */
  set: (key: string, value: string, ttlMs?: number) => Promise<void>
  /** Sets only when absent; true when it was set. */
  setNx: (key: string, value: string, ttlMs: number) => Promise<boolean>
  /** Replaces the value only while it still equals `expected`; true when it was replaced. */
  compareAndSet: (key: string, expected: string, value: string, ttlMs: number) => Promise<boolean>
  /** Returns how many keys existed. */
  del: (...keys: string[]) => Promise<number>
  /** Increments; the expiry is set when the key is created. */
  incr: (key: string, ttlMs: number) => Promise<number>
  /** Remaining lifetime in ms; -2 missing, -1 no expiry. */
  pttl: (key: string) => Promise<number>
  ping: () => Promise<void>
  /** Commands can be sent now (the memory store always can). */
  readonly connected: boolean
  /**
   * Called when the connection to the server is lost and when it is ready again.
   * What the server holds after a reconnect may be older than what was written
   * before (a restart from a snapshot, writes lost during a partition).
   */
  onConnection: (listener: (event: 'lost' | 'ready') => void) => void
  /** Identifies the server process (Redis's run_id): it changes when the server restarts. */
  serverId: () => Promise<string | null>
}

declare module 'fastify' {
  interface FastifyInstance {
    store: KeyValueStore
  }
}

export class MemoryStore implements KeyValueStore {
  readonly kind = 'memory' as const
  private readonly data = new Map<string, { value: string, expiresAt: number }>()
  private readonly sweeper: NodeJS.Timeout

  constructor (private readonly now: () => number = Date.now) {
    this.sweeper = setInterval(() => this.sweep(), 60_000)
    this.sweeper.unref()
  }

  private live (key: string) {
    const entry = this.data.get(key)
    if (entry && entry.expiresAt <= this.now()) {
      this.data.delete(key)
      return undefined
    }
    return entry
  }

  private sweep () {
    const now = this.now()
    for (const [key, entry] of this.data) if (entry.expiresAt <= now) this.data.delete(key)
  }

  async get (key: string) { return this.live(key)?.value ?? null }
  async mget (keys: string[]) { return keys.map((k) => this.live(k)?.value ?? null) }
  async set (key: string, value: string, ttlMs?: number) {
    this.data.set(key, { value, expiresAt: ttlMs === undefined ? Infinity : this.now() + ttlMs })
  }

  async setNx (key: string, value: string, ttlMs: number) {
    if (this.live(key)) return false
    await this.set(key, value, ttlMs)
    return true
  }

  async compareAndSet (key: string, expected: string, value: string, ttlMs: number) {
    if (this.live(key)?.value !== expected) return false
    await this.set(key, value, ttlMs)
    return true
  }

  async del (...keys: string[]) {
    let n = 0
    for (const k of keys) if (this.live(k) && this.data.delete(k)) n++
    return n
  }

  async incr (key: string, ttlMs: number) {
    const entry = this.live(key)
    const next = (entry ? Number(entry.value) : 0) + 1
    this.data.set(key, { value: String(next), expiresAt: entry?.expiresAt ?? this.now() + ttlMs })
    return next
  }

  async pttl (key: string) {
    const entry = this.live(key)
    if (!entry) return -2
    return entry.expiresAt === Infinity ? -1 : entry.expiresAt - this.now()
  }

  async ping () {}
  readonly connected = true
  onConnection () {}
  async serverId () { return 'memory' }
  close () { clearInterval(this.sweeper); this.data.clear() }
}

export class RedisStore implements KeyValueStore {
  readonly kind = 'redis' as const
  constructor (private readonly redis: Redis) {}
  async get (key: string) { return this.redis.get(key) }
  async mget (keys: string[]) { return keys.length === 0 ? [] : this.redis.mget(keys) }
  async set (key: string, value: string, ttlMs?: number) {
    if (ttlMs === undefined) await this.redis.set(key, value)
    else await this.redis.set(key, value, 'PX', Math.max(1, Math.ceil(ttlMs)))
  }

  async setNx (key: string, value: string, ttlMs: number) {
    return (await this.redis.set(key, value, 'PX', Math.max(1, Math.ceil(ttlMs)), 'NX')) === 'OK'
  }

  async compareAndSet (key: string, expected: string, value: string, ttlMs: number) {
    return (await this.redis.eval(COMPARE_AND_SET, 1, key, expected, value, Math.max(1, Math.ceil(ttlMs)))) === 1
  }

  async del (...keys: string[]) { return keys.length === 0 ? 0 : this.redis.del(...keys) }
  async incr (key: string, ttlMs: number) {
    const [[incrError, value], [expireError]] = (await this.redis.multi().incr(key).pexpire(key, Math.max(1, Math.ceil(ttlMs)), 'NX').exec()) as Array<[Error | null, unknown]>
    if (incrError ?? expireError) throw incrError ?? expireError
    return Number(value)
  }

  async pttl (key: string) { return this.redis.pttl(key) }
  async ping () { await this.redis.ping() }
  get connected () { return this.redis.status === 'ready' }
  onConnection (listener: (event: 'lost' | 'ready') => void) {
    this.redis.on('close', () => listener('lost'))
    this.redis.on('ready', () => listener('ready'))
  }

  async serverId () {
    const info = await this.redis.info('server')
    return /^run_id:(\w+)/m.exec(info)?.[1] ?? null
  }
}

const COMPARE_AND_SET = `if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0`

export default fp(async (fastify) => {
  const { REDIS_URL, REDIS_KEY_PREFIX, REDIS_COMMAND_TIMEOUT_MS } = fastify.config
  if (!REDIS_URL) {
    const store = new MemoryStore()
    fastify.decorate('store', store)
    fastify.addHook('onClose', async () => store.close())
    return
  }
  const redis = new Redis(REDIS_URL, {
    keyPrefix: REDIS_KEY_PREFIX,
    enableOfflineQueue: false,
    // Commands issued in the same event-loop turn leave in one write: a request's
    // auth-state MGET and its rate-limit script share a round trip, and under load
    // the commands of many requests share a syscall.
    enableAutoPipelining: true,
    maxRetriesPerRequest: 1,
    connectTimeout: 3000,
    commandTimeout: REDIS_COMMAND_TIMEOUT_MS,
    retryStrategy: (attempt: number) => Math.min(attempt * 200, 2000)
  })
  redis.on('error', (error: Error) => fastify.log.warn({ err: error }, 'redis error'))
  // @fastify/redis waits for the connection and decorates `fastify.redis`; closing is ours (below).
  await fastify.register(fastifyRedis, { client: redis as never, closeClient: false })
  // QUIT cannot be sent while Redis is unreachable (no offline queue): then just drop the socket.
  fastify.addHook('onClose', async () => {
    if (redis.status === 'ready') await redis.quit().catch(() => redis.disconnect())
    else redis.disconnect()
  })
  fastify.decorate('store', new RedisStore(redis))
}, { name: 'store' })
