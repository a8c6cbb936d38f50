import type { FastifyBaseLogger } from 'fastify'
import type { Redis } from 'ioredis'
import type { KeyValueStore } from '../../external/store.ts'
import type { UserState } from './user-state.ts'

/**
 * The auth state of hot sessions held in process (Redis stack only), so a request
 * of a session seen a moment ago needs no round trip. Invalidated by a pub/sub
 * channel that every writer of auth state publishes to after its cache write
 * (user-state.ts `announce`: revocations, user state refreshes, permission changes).
 *
 * Why a channel and not CLIENT TRACKING: ioredis 6 (RESP3 by default) drops the push
 * frames it does not know, `invalidate` among them, so tracking would have to REDIRECT
 * to a connection subscribed to `__redis__:invalidate`; its default mode would need the reading
 * connection itself to be tracked (on every node of a cluster, set up before its first
 * read, which ioredis gives no hook for), and BCAST mode matches key prefixes, while our
 * keys start with the user's hash tag (`{uid}:s:`): a BCAST prefix could only be the
 * whole REDIS_KEY_PREFIX and would push every rate-limit and OTP write to every
 * instance. A PUBLISH reaches every subscriber on one server, behind Sentinel
 * (the promoted master, and replicas too) and on every node of a cluster.
 *
 * Correctness:
 * - Nothing is served from here unless the subscription is confirmed (SUBSCRIBE
 *   answered on the current connection) and a PING answered within HEARTBEAT_MS x 2:
 *   any close, error, reconnect or silent stall drops the whole cache first.
 * - No fill race: `seq` is bumped by every invalidation and drop; a fill that captured
 *   another value before its MGET is not stored.
 * - A hard TTL (AUTH_LOCAL_CACHE_TTL_MS) bounds anything missed; an entry stamped with a
 *   generation older than the trusted one (state-cache.ts) is not used.
 * - Bounded: at most `max` sessions and users, the oldest inserted evicted first.
 */
interface UserEntry { readonly state: UserState, readonly generation: number }
interface SessionEntry { readonly user: UserEntry, readonly expiresAt: number, readonly storedAt: number }

export const HEARTBEAT_MS = 500

/**
 * The channel's messages are `<instance>:<user id>`. An instance skips its own: it
 * invalidated its copy right after its write (`announce`), and what it reads after
 * that comes over the same connection as the write (a Redis Cluster routes both by the
 * user's hash tag), so it is never older. Without this, the echo of a login's state
 * refresh would drop the session its first request had just cached.
 */
export const invalidation = (instance: string, userId: string) => `${instance}:${userId}`

export class LocalAuthState {
  /** Bumped by every invalidation and drop. */
  seq = 0
  /** Entries may be served until then (ms): the subscription answered recently. 0: not confirmed. */
  private aliveUntil = 0
  private readonly users = new Map<string, UserEntry>()
  private readonly sessions = new Map<string, SessionEntry>()

  constructor (private readonly ttlMs: number, private readonly max: number) {}

  /** The entry of an active session and user, or undefined. `trusted` < 0: nothing is trusted. */
  get (sessionId: string, userId: string, trusted: number): SessionEntry | undefined {
    const entry = this.sessions.get(sessionId)
    if (entry === undefined) return undefined
    const now = Date.now()
    if (now > this.aliveUntil) return undefined
    if (entry.user !== this.users.get(userId) || entry.user.generation < trusted || trusted < 0 || now - entry.storedAt >= this.ttlMs) {
      this.sessions.delete(sessionId)
      return undefined
    }
    return entry
  }

  /** Stores what a request read, unless an invalidation or drop happened since `seq` was captured. */
  set (seq: number, sessionId: string, userId: string, state: UserState, generation: number, expiresAt: number) {
    if (seq !== this.seq || this.aliveUntil === 0) return
    let user = this.users.get(userId)
    if (user === undefined || user.state !== state || user.generation !== generation) {
      user = { state, generation }
      if (this.users.size >= this.max) this.users.delete(this.users.keys().next().value!)
      this.users.set(userId, user)
    }
    if (this.sessions.size >= this.max && !this.sessions.has(sessionId)) this.sessions.delete(this.sessions.keys().next().value!)
    this.sessions.set(sessionId, { user, expiresAt, storedAt: Date.now() })
  }

  /** A user's auth state changed (any of their sessions, or the user): their entries go. */
  invalidate (userId: string) {
    this.seq++
    // Session entries point at the user entry they were read with: without it they miss.
    this.users.delete(userId)
  }

  /** Forgets everything (the entries may have missed an invalidation). */
  clear () {
    this.seq++
    this.users.clear()
    this.sessions.clear()
  }

  /** The subscription is lost or in doubt: drop all and serve nothing until confirmed again. */
  lose () {
    this.aliveUntil = 0
    this.clear()
  }

  /** The subscription answered (SUBSCRIBE or PING): what arrives from now on is heard. */
  alive () { this.aliveUntil = Date.now() + HEARTBEAT_MS * 2 }

  get size () { return this.sessions.size }
}

/**
 * Keeps a subscription to `channel` on a connection of its own, feeding `local`;
 * returns the function that closes it.
 */
export function subscribeInvalidations (store: KeyValueStore, channel: string, name: string, instance: string, local: LocalAuthState, log: FastifyBaseLogger): () => void {
  const mine = `${instance}:`
  let closed = false
  let connection: Redis | null = null
  let confirmed = false

  function open () {
    if (closed) return
    let created: Redis | null
    try {
      created = store.subscriber(name)
    } catch (err) {
      log.warn({ err }, 'auth invalidation channel: no connection; retrying')
      setTimeout(open, 1000).unref()
      return
    }
    if (created === null) return
    const sub = created
    connection = sub
    let epoch = 0
    const lose = () => {
      epoch++
      confirmed = false
      local.lose()
    }
    sub.on('error', (err: Error) => {
      log.warn({ err }, 'auth invalidation channel error; the local auth cache is dropped')
      lose()
    })
    sub.on('close', lose)
    sub.on('reconnecting', lose)
    sub.on('end', () => {
      lose()
      if (connection === sub && !closed) setTimeout(open, 500).unref()
    })
    sub.on('message', (from: string, message: string) => {
      if (from === channel && !message.startsWith(mine)) local.invalidate(message.slice(message.indexOf(':') + 1))
    })
    sub.on('ready', () => {
      const at = epoch
      sub.subscribe(channel).then(() => {
        if (at !== epoch || closed) return
        confirmed = true
        local.alive()
      }, (err: unknown) => {
        log.warn({ err }, 'auth invalidation channel: SUBSCRIBE failed; reconnecting')
        lose()
        sub.disconnect(true)
      })
    })
  }

  // A PING answered on the subscribed connection proves every message sent before it
  // was received: the cache stays usable only while these keep coming back.
  const heartbeat = setInterval(() => {
    const own = connection
    if (own === null || !confirmed) return
    own.ping().then(() => { if (confirmed && connection === own) local.alive() }, () => {
      if (connection !== own) return
      confirmed = false
      local.lose()
      own.disconnect(true)
    })
  }, HEARTBEAT_MS)
  heartbeat.unref()

  open()
  return () => {
    closed = true
    clearInterval(heartbeat)
    local.lose()
    connection?.disconnect()
  }
}
