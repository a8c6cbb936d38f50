import fp from 'fastify-plugin'
import { eq } from 'drizzle-orm'
import { session } from '../../../db/schema/index.ts'
import { AppError } from '../../../schemas/errors.ts'
import type { VerifiedToken } from './tokens.ts'
import { randomBytes } from 'node:crypto'
import { LocalAuthState, invalidation, subscribeInvalidations } from './local-state.ts'

/**
 * What a request needs to know about its session and user, cached in the shared
 * store and read with one MGET per authenticated request.
 *
 * - The `session` table is the source of truth: a request is accepted only while its
 *   session is active and its user is active. A revocation overwrites the cache at
 *   once, and a cache that lost its data is refilled from PostgreSQL, so revocations
 *   survive a FLUSHALL (SR-20) and nothing fails open (SR-41).
 * - Entries carry the cache generation they were computed under (state-cache.ts):
 *   `s:<sid>` is `a:<expires ms>:<generation>` or `r` (revoked, final), `u:<uid>` is
 *   `<generation>:<state JSON>`. An entry older than the trusted generation is
 *   treated as missing, so a revocation the cache could not take (Redis down or
 *   partitioned), or one a restart from an older snapshot lost, never comes back.
 * - On the Redis stack, hot sessions are also held in process (local-state.ts): every
 *   writer below announces the user on the invalidation channel after its cache write.
 * - The state JSON keeps compact keys (`CachedState`): every instance of a rolling
 *   deploy reads the same entries. What leaves this module is a readable `UserState`.
 */
export interface UserState {
  /** The account may sign in (active, not deactivated or deleted). */
  readonly active: boolean
  readonly permissionVersion: number
  /** The account's last_updated (ms): a session token's profile snapshot is current while equal. */
  readonly lastUpdated: number
  /** Member of an active super_admin group. */
  readonly superAdmin: boolean
  /** Permission codenames, sorted. */
  readonly permissions: readonly string[]
  /** The saved language. */
  readonly language: string
  /** Member of an active `require_mfa` group without a verified factor: refused all but enrolment. */
  readonly mfaEnrolmentRequired: boolean
}

/** The cached encoding of a UserState. */
interface CachedState { a: boolean, pv: number, lu: number, su: boolean, p: readonly string[], l: string, m?: boolean }

export interface AuthStateService {
  /** The state of an authenticated request's session and user; AUTH_SESSION_REVOKED when the session or the user is not active. */
  check: (token: VerifiedToken) => Promise<UserState>
  /** A user's state, from the cache when it holds a current entry. */
  current: (userId: string) => Promise<UserState>
  /** Recomputes a user's cached state after a change (deactivation, permissions, profile). */
  refresh: (userId: string) => Promise<UserState>
  /**
   * After a change to users' groups or permissions: bumps their permission version
   * (so session tokens that embed permissions are re-checked) and refreshes their
   * cached state, so the change applies on the very next request (SR-22).
   */
  permissionsChanged: (userIds: string[]) => Promise<void>
  /** Writes the revocation of these sessions into the cache (their rows are already revoked or deleted). */
  markRevoked: (sessions: ReadonlyArray<{ id: string, userId: string }>) => Promise<void>
}

declare module 'fastify' {
  interface FastifyInstance { authState: AuthStateService }
}

const REVOKED = 'r'
const PARSED_STATES_MAX = 10_000
/** Sessions (and users) held in process at most. */
const LOCAL_ENTRIES_MAX = 50_000
const NO_USER: UserState = { active: false, permissionVersion: -1, lastUpdated: 0, superAdmin: false, permissions: [], language: 'en', mfaEnrolmentRequired: false }
// The user id is the Redis Cluster hash tag: a request's MGET of session and user is one slot.
const sessionKey = (uid: string, sid: string) => `{${uid}}:s:${sid}`
const userKey = (uid: string) => `{${uid}}:u`

const encode = (state: UserState, generation: number) => `${generation}:${JSON.stringify({
  a: state.active, pv: state.permissionVersion, lu: state.lastUpdated, su: state.superAdmin, p: state.permissions, l: state.language, m: state.mfaEnrolmentRequired
} satisfies CachedState)}`

const decode = (cached: CachedState): UserState => ({
  active: cached.a, permissionVersion: cached.pv, lastUpdated: cached.lu, superAdmin: cached.su, permissions: cached.p, language: cached.l, mfaEnrolmentRequired: cached.m === true
})

/** The expiry (ms) of an active-session entry `a:<expires>:<generation>` written under `trusted` or later; NaN when older or malformed. */
function currentSessionEntry (entry: string, trusted: number): number {
  const separator = entry.indexOf(':', 2)
  if (separator < 0 || !(Number(entry.slice(separator + 1)) >= trusted)) return NaN
  return Number(entry.slice(2, separator))
}

export default fp(async (fastify) => {
  const { authCache, config, db, store, users } = fastify
  const minute = 60_000
  const cacheMs = config.AUTH_STATE_CACHE_SECONDS * 1000
  const revokedMs = config.REFRESH_TOKEN_EXPIRY_MINUTES * minute
  const now = () => fastify.now()
  const channel = `${config.REDIS_KEY_PREFIX}auth:invalidate`
  const instance = randomBytes(6).toString('hex')
  const local = store.kind === 'redis' && config.AUTH_LOCAL_CACHE_TTL_MS > 0 ? new LocalAuthState(config.AUTH_LOCAL_CACHE_TTL_MS, LOCAL_ENTRIES_MAX) : null
  if (local !== null) {
    const close = subscribeInvalidations(store, channel, `${config.REDIS_KEY_PREFIX}auth-invalidation`, instance, local, fastify.log)
    fastify.addHook('onClose', async () => close())
    // The shared cache may now hold older data (state-cache.ts): so may the copies of it.
    store.onConnection((event) => { if (event === 'lost') local.clear() })
  }

  async function load (userId: string): Promise<UserState> {
    return (await users.authState(userId)) ?? NO_USER
  }

  /**
   * A cache write that must land (a change, a revocation). If it fails, the cache may
   * keep an older truth: the generation is bumped (durably, before the change is
   * acknowledged) so that no instance trusts it again (SR-20, SR-21).
   */
  async function writeOrDistrust (write: Promise<unknown>, what: string) {
    try {
      await write
    } catch (err) {
      fastify.log.warn({ err }, `${what} cache write failed; the cache generation is bumped (Postgres has the change)`)
      await authCache.writeFailed()
    }
  }

  /**
   * After a write of these users' auth state: the local copies go, here at once and
   * on every instance through the channel (whatever the local cache setting here, others
   * may hold copies). Published after the write, so an instance that re-reads on the
   * message finds the new entry. A lost publish bumps the generation like a lost write.
   */
  async function announce (userIds: Iterable<string>) {
    if (store.kind !== 'redis') return
    const unique = new Set(userIds)
    for (const id of unique) local?.invalidate(id)
    await writeOrDistrust(Promise.all([...unique].map((id) => store.publish(channel, invalidation(instance, id)))), 'invalidation')
  }

  async function refresh (userId: string) {
    const generation = authCache.known
    const state = await load(userId)
    // Overwrite (not NX): a reader that raced with the change cannot keep the old state.
    await writeOrDistrust(store.set(userKey(userId), encode(state, generation), cacheMs), 'user state')
    await announce([userId])
    return state
  }

  // The cached state of a user, decoded once per distinct value: busy users send many
  // requests between two changes, and parsing the permission list each time is
  // measurable (docs/performance.md). Keyed by the exact string, so a change is
  // never missed. The objects are shared between requests and treated as read-only.
  const parsedStates = new Map<string, { raw: string, state: UserState, generation: number }>()
  function parsedState (userId: string, raw: string) {
    const known = parsedStates.get(userId)
    if (known !== undefined && known.raw === raw) return known
    const separator = raw.indexOf(':')
    // NaN (an entry without a generation) is older than any generation.
    const parsed = { raw, state: NO_USER, generation: Number(raw.slice(0, separator)) }
    try {
      parsed.state = decode(JSON.parse(raw.slice(separator + 1)) as CachedState)
    } catch {
      parsed.generation = NaN
    }
    if (parsedStates.size >= PARSED_STATES_MAX && known === undefined) parsedStates.delete(parsedStates.keys().next().value!)
    parsedStates.set(userId, parsed)
    return parsed
  }

  async function current (userId: string) {
    const trusted = authCache.trusted
    const cached = trusted < 0 ? null : await store.get(userKey(userId)).catch(() => null)
    if (cached) {
      const parsed = parsedState(userId, cached)
      if (parsed.generation >= trusted) return parsed.state
    }
    return refresh(userId)
  }

  async function markRevoked (sessions: ReadonlyArray<{ id: string, userId: string }>) {
    if (sessions.length === 0) return
    await writeOrDistrust(Promise.all(sessions.map((s) => store.set(sessionKey(s.userId, s.id), REVOKED, revokedMs))), 'revocation')
    await announce(sessions.map((s) => s.userId))
  }

  async function permissionsChanged (userIds: string[]) {
    const unique = [...new Set(userIds)]
    if (unique.length === 0) return
    await fastify.users.bumpPermissionVersion(unique)
    await Promise.all(unique.map((id) => refresh(id)))
  }

  async function check (token: VerifiedToken): Promise<UserState> {
    const { sessionId, userId } = token
    // Read once, before Postgres is asked: entries written below carry the generation
    // their Postgres read is at least as new as. -1: the cache is not trusted right now.
    const trusted = authCache.trusted
    if (local !== null) {
      const hit = local.get(sessionId, userId, trusted)
      if (hit !== undefined && hit.expiresAt > now()) return hit.user.state
    }
    // Captured before the MGET: an invalidation arriving meanwhile keeps what is read out of the local cache.
    const seq = local?.seq ?? 0
    let cachedSession: string | null = null
    let cachedUser: string | null = null
    if (trusted >= 0) {
      try {
        [cachedSession, cachedUser] = await store.mget([sessionKey(userId, sessionId), userKey(userId)])
      } catch (err) {
        // The cache is down: ask Postgres (never fail open). If Postgres is down too, the request gets 503.
        fastify.log.warn({ err }, 'auth state cache unavailable; using Postgres')
      }
    }
    if (cachedSession === REVOKED) throw new AppError('AUTH_SESSION_REVOKED')
    // The session's expiry (ms) from a current entry; NaN when missing, older than `trusted` or malformed.
    let expiresAt = cachedSession === null ? NaN : currentSessionEntry(cachedSession, trusted)
    if (Number.isNaN(expiresAt)) {
      const [row] = await db.select({ user_id: session.user_id, revoked_at: session.revoked_at, expires_at: session.expires_at })
        .from(session).where(eq(session.session_id, sessionId))
      const active = row !== undefined && row.user_id === userId && row.revoked_at === null && row.expires_at.getTime() > now()
      if (trusted >= 0) {
        const entry = active ? `a:${row.expires_at.getTime()}:${trusted}` : REVOKED
        const ttl = Math.max(active ? Math.min(cacheMs, row.expires_at.getTime() - now()) : revokedMs, 1000)
        // NX, or replacing only the stale entry that was read: a revocation written meanwhile is never overwritten.
        const write = cachedSession === null ? store.setNx(sessionKey(userId, sessionId), entry, ttl) : store.compareAndSet(sessionKey(userId, sessionId), cachedSession, entry, ttl)
        await write.catch(() => {})
      }
      if (!active) throw new AppError('AUTH_SESSION_REVOKED')
      expiresAt = row.expires_at.getTime()
    }
    if (expiresAt <= now()) throw new AppError('AUTH_SESSION_REVOKED')
    const cached = cachedUser === null ? undefined : parsedState(userId, cachedUser)
    let state: UserState
    if (cached !== undefined && cached.generation >= trusted) {
      state = cached.state
    } else {
      state = await load(userId)
      if (trusted >= 0) {
        const entry = encode(state, trusted)
        const write = cachedUser === null ? store.setNx(userKey(userId), entry, cacheMs) : store.compareAndSet(userKey(userId), cachedUser, entry, cacheMs)
        await write.catch(() => {})
      }
    }
    if (!state.active) throw new AppError('AUTH_SESSION_REVOKED')
    if (local !== null && trusted >= 0) local.set(seq, sessionId, userId, state, trusted, expiresAt)
    return state
  }

  fastify.decorate('authState', { check, current, refresh, permissionsChanged, markRevoked } satisfies AuthStateService)
}, { name: 'auth-state', dependencies: ['db', 'store', 'auth-cache', 'users'] })
