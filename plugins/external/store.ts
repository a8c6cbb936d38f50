import fp from 'fastify-plugin'
import fastifyRedis from '@fastify/redis'
import { Cluster, Redis, type RedisOptions } from 'ioredis'
import type { AppConfig } from '../../config.ts'

/**
 * The key-value store with TTLs behind revocation caches, OTPs, lockouts and
 * counters: Redis when REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES is set (shared by every instance), otherwise an
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
  /** Reads and deletes in one step (GETDEL): of concurrent callers only one gets the value. */
  take: (key: string) => Promise<string | null>
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
  /** PUBLISH (not prefixed: the caller names the channel); the memory store has no subscribers. */
  publish: (channel: string, message: string) => Promise<void>
  /**
   * A new connection of its own for SUBSCRIBE (a subscribed connection can send nothing
   * else), named `name` in CLIENT LIST; null for the memory store. It does not resubscribe
   * by itself. In a cluster it goes to one of the masters (a PUBLISH reaches every node)
   * and ends after a few failed reconnects: the caller then asks for another.
   */
  subscriber: (name: string) => Redis | null
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

  async take (key: string) {
    const value = this.live(key)?.value ?? null
    this.data.delete(key)
    return value
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
  async publish () {}
  subscriber () { return null }
  close () { clearInterval(this.sweeper); this.data.clear() }
}

export class RedisStore implements KeyValueStore {
  readonly kind = 'redis' as const
  private readonly redis: Redis
  /** Set when the store is a Redis Cluster: the connection stays up while one node fails over. */
  private readonly cluster?: Cluster

  constructor (client: Redis | Cluster) {
    this.redis = client as Redis
    if (client instanceof Cluster) this.cluster = client
  }

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
  async take (key: string) { return this.redis.getdel(key) }
  async incr (key: string, ttlMs: number) {
    const [[incrError, value], [expireError]] = (await this.redis.multi().incr(key).pexpire(key, Math.max(1, Math.ceil(ttlMs)), 'NX').exec()) as Array<[Error | null, unknown]>
    if (incrError ?? expireError) throw incrError ?? expireError
    return Number(value)
  }

  async pttl (key: string) { return this.redis.pttl(key) }
  async ping () {
    if (!this.cluster) {
      await this.redis.ping()
      return
    }
    // Ready only when every master answers: a cluster with a failed master cannot serve its slots.
    const slots = this.cluster.slots
    for (let slot = 0; slot < 16384; slot++) if (!slots[slot]?.length) throw new Error(`Redis Cluster slot ${slot} has no node`)
    await Promise.all(this.cluster.nodes('master').map((node) => node.ping()))
  }

  get connected () { return this.redis.status === 'ready' }
  onConnection (listener: (event: 'lost' | 'ready') => void) {
    this.redis.on('close', () => listener('lost'))
    this.redis.on('ready', () => listener('ready'))
    if (this.cluster) watchClusterNodes(this.cluster, () => this.serverId(), listener)
  }

  /**
   * Identifies the server processes: Redis's run_id, which changes when the server restarts
   * and differs on a promoted replica (Sentinel reconnects to it: 'lost', then 'ready').
   * In a cluster, the address and run_id of every master: a failover changes it.
   */
  async serverId () {
    if (!this.cluster) return runIdOf(await this.redis.info('server'))
    const masters = this.cluster.nodes('master')
    if (masters.length === 0) return null
    const ids = await Promise.all(masters.map(async (node) => `${node.options.host}:${node.options.port}=${runIdOf(await node.info('server'))}`))
    return ids.sort().join(',')
  }

  async publish (channel: string, message: string) { await this.redis.publish(channel, message) }

  subscriber (name: string): Redis {
    const own = { connectionName: name, autoResubscribe: false }
    if (!this.cluster) return this.redis.duplicate(own)
    const nodes = this.cluster.nodes('master')
    const node = nodes.length > 0 ? nodes[Math.floor(Math.random() * nodes.length)] : this.cluster.nodes('all')[0]
    if (node === undefined) throw new Error('Redis Cluster: no node to subscribe on')
    const { host, port, password, username, tls } = node.options
    return new Redis({ host, port, password, username, tls, ...own, maxRetriesPerRequest: 1, connectTimeout: 3000, retryStrategy: (attempt) => (attempt > 3 ? null : attempt * 200) })
  }
}

const runIdOf = (info: string) => /^run_id:(\w+)/m.exec(info)?.[1] ?? null

const CLUSTER_CHECK_MS = 1000

/**
 * A cluster client stays 'ready' while one master fails and a replica takes its slots,
 * so the connection events alone do not tell the auth-state cache that a node may now
 * serve older data. Any node error, removed node or change in the set of masters counts
 * as a lost connection at once; 'ready' follows when every master answers again (checked
 * every second), and the cache then compares the masters' run_ids with the recorded ones.
 */
function watchClusterNodes (cluster: Cluster, signature: () => Promise<string | null>, listener: (event: 'lost' | 'ready') => void) {
  const mastersOf = () => cluster.nodes('master').map((node) => `${node.options.host}:${node.options.port}`).sort().join(',')
  let lost = false
  let known: string | null = null
  let masters = ''
  const lose = () => {
    if (lost) return
    lost = true
    listener('lost')
  }
  cluster.on('-node', lose)
  cluster.on('node error', lose)
  cluster.on('close', () => { lost = true })
  cluster.on('ready', () => { lost = false; masters = mastersOf() })
  cluster.on('refresh', () => {
    const now = mastersOf()
    if (masters !== '' && now !== masters) lose()
    masters = now
  })
  let checking = false
  const timer = setInterval(() => {
    if (checking || cluster.status !== 'ready') return
    checking = true
    signature().then((current) => {
      if (current === null) return lose()
      if (current !== known && known !== null) lose()
      known = current
      if (lost) {
        lost = false
        listener('ready')
      }
    }, lose).finally(() => { checking = false })
  }, CLUSTER_CHECK_MS)
  timer.unref()
  cluster.once('end', () => clearInterval(timer))
}

const COMPARE_AND_SET = `if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0`

/** `host:port,host:port` (an IPv6 host in brackets) as ioredis takes node addresses. */
export function parseHostPorts (list: string): Array<{ host: string, port: number }> {
  return list.split(',').map((item) => item.trim()).filter(Boolean).map((item) => {
    const match = /^(?:\[([^\]]+)\]|([^:\s]+)):(\d{1,5})$/.exec(item)
    if (!match || Number(match[3]) > 65535) throw new Error(`not host:port: ${JSON.stringify(item)}`)
    return { host: match[1] ?? match[2], port: Number(match[3]) }
  })
}

/**
 * The ioredis client for the configured topology: REDIS_URL (one server),
 * REDIS_SENTINELS + REDIS_SENTINEL_NAME (the master Sentinel names; on a failover
 * ioredis reconnects to the promoted replica), or REDIS_CLUSTER_NODES (a Redis
 * Cluster: keys are routed by slot, and keys used together share a hash tag).
 * config.ts refuses any other combination. Null: no Redis (the in-process store).
 */
export function createRedisClient (config: AppConfig): Redis | Cluster | null {
  const { REDIS_URL, REDIS_KEY_PREFIX, REDIS_COMMAND_TIMEOUT_MS, REDIS_PASSWORD } = config
  const options: RedisOptions = {
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
  }
  if (config.REDIS_CLUSTER_NODES) {
    const { keyPrefix, enableOfflineQueue, enableAutoPipelining, retryStrategy, ...nodeOptions } = options
    return new Cluster(parseHostPorts(config.REDIS_CLUSTER_NODES), {
      keyPrefix,
      enableOfflineQueue,
      enableAutoPipelining,
      clusterRetryStrategy: retryStrategy!,
      // A failed master's slots move to its replica within the cluster's node timeout;
      // commands meanwhile fail (and security checks fail closed) rather than wait.
      maxRedirections: 6,
      // Topology changes (a promoted replica) are learnt even when no command fails.
      slotsRefreshInterval: 2000,
      retryDelayOnFailover: 200,
      retryDelayOnClusterDown: 200,
      redisOptions: { ...nodeOptions, ...(REDIS_PASSWORD ? { password: REDIS_PASSWORD } : {}) }
    })
  }
  if (config.REDIS_SENTINELS) {
    return new Redis({
      ...options,
      sentinels: parseHostPorts(config.REDIS_SENTINELS),
      name: config.REDIS_SENTINEL_NAME!,
      ...(config.REDIS_SENTINEL_PASSWORD ? { sentinelPassword: config.REDIS_SENTINEL_PASSWORD } : {}),
      ...(REDIS_PASSWORD ? { password: REDIS_PASSWORD } : {}),
      // After a failover the old master may come back as a replica: a READONLY error
      // makes ioredis ask the Sentinels again instead of writing to it.
      reconnectOnError: (error: Error) => error.message.startsWith('READONLY'),
      sentinelRetryStrategy: (attempt: number) => Math.min(attempt * 200, 2000),
      // Listens for the Sentinels' +switch-master and reconnects at once, rather than
      // when the dead master's socket finally errors.
      failoverDetector: true
    })
  }
  if (REDIS_URL) return new Redis(REDIS_URL, options)
  return null
}

export default fp(async (fastify) => {
  const redis = createRedisClient(fastify.config)
  if (!redis) {
    const store = new MemoryStore()
    fastify.decorate('store', store)
    fastify.addHook('onClose', async () => store.close())
    return
  }
  redis.on('error', (error: Error) => fastify.log.warn({ err: error }, 'redis error'))
  if (redis instanceof Cluster) redis.on('node error', (error: Error, node: string) => fastify.log.warn({ err: error, node }, 'redis cluster node error'))
  // @fastify/redis waits for the connection and decorates `fastify.redis`; closing is ours (below).
  await fastify.register(fastifyRedis, { client: redis as never, closeClient: false })
  let closing = false
  if (fastify.config.REDIS_SENTINELS) {
    // ioredis gives a connection up for good ('end') when the failover detector's
    // +switch-master arrives while it is already reconnecting (the reconnect is aborted):
    // start again, until the app closes.
    redis.on('end', () => {
      if (closing) return
      fastify.log.warn('redis connection ended; connecting again')
      setTimeout(() => { if (!closing) (redis as Redis).connect().catch(() => {}) }, 500).unref()
    })
  }
  // QUIT cannot be sent while Redis is unreachable (no offline queue): then just drop the socket.
  // disconnect() after QUIT closes what QUIT leaves open: the failover detector's Sentinel
  // connections, which would otherwise keep reconnecting and hold the process open.
  fastify.addHook('onClose', async () => {
    closing = true
    if (redis.status === 'ready') await redis.quit().catch(() => {})
    redis.disconnect()
  })
  fastify.decorate('store', new RedisStore(redis))
}, { name: 'store' })
