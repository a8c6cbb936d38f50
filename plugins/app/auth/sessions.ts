import fp from 'fastify-plugin'
import { createHmac, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto'
import { and, eq, gt, inArray, isNull, ne, sql } from 'drizzle-orm'
import { UAParser } from 'ua-parser-js'
import { session, user, type NewSession, type Session, type User } from '../../../db/schema/index.ts'
import { AppError } from '../../../schemas/errors.ts'
import { toPublicUser, type PublicUser } from '../accounts/users.ts'

/**
 * Sessions and the three tokens of API.md.
 *
 * - The `session` table is the source of truth: one row per login (device).
 * - Access and session tokens are JWTs carrying `sid`; a request is accepted only
 *   while its session is active and its user is active. That state is cached in the
 *   shared store (`s:<sid>`, `u:<uid>`), read with one MGET; a revocation overwrites
 *   the cache at once, and a cache that lost its data is refilled from Postgres, so
 *   revocations survive a FLUSHALL (SR-20) and nothing fails open (SR-41).
 * - Entries carry the cache generation they were computed under (auth-cache.ts):
 *   `s:` is `a:<expires ms>:<generation>` or `r` (revoked, final), `u:` is
 *   `<generation>:<state JSON>`. An entry older than the trusted generation is
 *   treated as missing, so a revocation the cache could not take (Redis down or
 *   partitioned), or one a restart from an older snapshot lost, never comes back.
 * - Refresh tokens are opaque: `<sid>.<generation>.<mac>`, the MAC keyed by the
 *   server secret and a per-session salt. Only the generation is stored. Rotating
 *   bumps it; the previous generation stays usable for a short grace window and
 *   then gets the very same new tokens (concurrent refreshes both succeed); any
 *   older replay revokes the session (SR-18).
 */

export type TokenType = 'access' | 'session'

export interface UserState {
  /** active account */
  a: boolean
  /** permission version */
  pv: number
  /** last_updated, ms: the profile snapshot in a session token is current when equal */
  lu: number
  /** member of an active super_admin group */
  su: boolean
  /** permission codenames */
  p: string[]
  /** saved language */
  l: string
}

export interface TokenClaims {
  sub: string
  sid: string
  jti: string
  type: TokenType
  iat: number
  exp: number
  iss?: string
  aud?: string
  /** session tokens only */
  pv?: number
  perms?: string[]
  su?: boolean
  lu?: number
  profile?: PublicUser
}

export interface TokenBundle {
  access_token: string
  session_token: string
  refresh_token: string
  session_id: string
  token_type: 'bearer'
  expires_in: number
  session_expires_in: number
  refresh_expires_in: number
  user: PublicUser
}

export interface ClientContext { ip: string, userAgent?: string, method: 'password' | 'otp' | 'oauth_password' }

export interface SessionService {
  create: (account: User, client: ClientContext) => Promise<TokenBundle>
  refresh: (refreshToken: string, client: { ip: string }) => Promise<{ bundle: TokenBundle, userId: string, sessionId: string, reused: boolean }>
  /** Marks one session revoked (no-op when already). Returns whether it was active. */
  revoke: (sessionId: string, reason: string) => Promise<boolean>
  /** Revokes every active session of a user, but `exceptSessionId`. Returns how many. */
  revokeAllForUser: (userId: string, reason: string, exceptSessionId?: string) => Promise<number>
  listActive: (userId: string) => Promise<Session[]>
  /** One active session of the user (not revoked, not expired); undefined otherwise. */
  findActive: (userId: string, sessionId: string) => Promise<Session | undefined>
  /** The user's active session whose current refresh token this is (MAC and generation); undefined otherwise. */
  findByRefreshToken: (userId: string, refreshToken: string) => Promise<Session | undefined>
  /** Loads (cached) what a request needs to know about its session and user; throws 401 when revoked. */
  check: (claims: TokenClaims) => Promise<UserState>
  /** Recomputes a user's cached state after a change (deactivation, permissions, profile). */
  refreshUserState: (userId: string) => Promise<UserState>
  userState: (userId: string) => Promise<UserState>
  /**
   * After a change to users' groups or permissions: bumps their permission version
   * (so session tokens that embed permissions are re-checked) and refreshes their
   * cached state, so the change applies on the very next request (SR-22).
   */
  permissionsChanged: (userIds: string[]) => Promise<void>
  parseRefreshToken: (token: string) => { sessionId: string, generation: number } | null
}

declare module 'fastify' {
  interface FastifyInstance { sessions: SessionService }
}

const REVOKED = 'r'
const PARSED_STATES_MAX = 10_000
// The user id is the Redis Cluster hash tag: a request's MGET of session and user is one slot.
const sessionKey = (uid: string, sid: string) => `{${uid}}:s:${sid}`
const userKey = (uid: string) => `{${uid}}:u`
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

export default fp(async (fastify) => {
  const { authCache, config, db, store, users } = fastify
  const secret = config.JWT_SECRET_KEY!
  const minute = 60_000
  const cacheMs = config.AUTH_STATE_CACHE_SECONDS * 1000
  const now = () => fastify.now()

  // Prepared once: token-info and session revocation look one session up per call.
  const activeById = db.select().from(session).where(and(
    eq(session.session_id, sql.placeholder('sessionId')),
    eq(session.user_id, sql.placeholder('userId')),
    isNull(session.revoked_at),
    gt(session.expires_at, sql.placeholder('now'))
  )).limit(1).prepare('session_active_by_id')

  // Prepared once: every login inserts a session (values bound, and converted by drizzle).
  const insertSession = db.insert(session).values({
    user_id: sql.placeholder('user_id'),
    refresh_secret: sql.placeholder('refresh_secret'),
    refresh_generation: sql.placeholder('refresh_generation'),
    auth_method: sql.placeholder('auth_method'),
    device_name: sql.placeholder('device_name'),
    ip_address: sql.placeholder('ip_address'),
    user_agent: sql.placeholder('user_agent'),
    created_at: sql.placeholder('created_at'),
    last_used_at: sql.placeholder('last_used_at'),
    expires_at: sql.placeholder('expires_at')
  }).returning().prepare('session_insert')

  const mac = (sid: string, generation: number, salt: string) =>
    createHmac('sha256', secret).update(`refresh.${sid}.${generation}.${salt}`).digest('base64url')
  const refreshTokenOf = (row: Pick<Session, 'session_id' | 'refresh_secret'>, generation: number) =>
    `${row.session_id}.${generation}.${mac(row.session_id, generation, row.refresh_secret)}`

  function parseRefreshToken (token: string) {
    const parts = token.split('.')
    if (parts.length !== 3 || !UUID.test(parts[0]) || !/^\d{1,9}$/.test(parts[1])) return null
    return { sessionId: parts[0], generation: Number(parts[1]) }
  }

  async function loadUserState (userId: string): Promise<UserState | null> {
    const loaded = await users.authState(userId)
    if (!loaded) return null
    return { a: loaded.active, pv: loaded.permissionVersion, lu: loaded.lastUpdated, su: loaded.superAdmin, p: loaded.permissions, l: loaded.language }
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

  async function refreshUserState (userId: string) {
    const generation = authCache.known
    const state = await loadUserState(userId)
    const value = state ?? { a: false, pv: -1, lu: 0, su: false, p: [], l: 'en' }
    // Overwrite (not NX): a reader that raced with the change cannot keep the old state.
    await writeOrDistrust(store.set(userKey(userId), `${generation}:${JSON.stringify(value)}`, cacheMs), 'user state')
    return value
  }

  // The cached state of a user, parsed once per distinct value: busy users send many
  // requests between two changes, and parsing (with the permission list) each time
  // showed in the profile. Keyed by the exact string, so a change is never missed.
  // The objects are shared between requests and treated as read-only.
  const parsedStates = new Map<string, { raw: string, state: UserState, generation: number }>()
  function parsedState (userId: string, raw: string) {
    const known = parsedStates.get(userId)
    if (known !== undefined && known.raw === raw) return known
    const separator = raw.indexOf(':')
    // NaN (an entry without a generation) is older than any generation.
    const parsed = { raw, state: undefined as unknown as UserState, generation: Number(raw.slice(0, separator)) }
    try {
      parsed.state = JSON.parse(raw.slice(separator + 1)) as UserState
    } catch {
      parsed.generation = NaN
    }
    if (parsedStates.size >= PARSED_STATES_MAX && known === undefined) parsedStates.delete(parsedStates.keys().next().value!)
    parsedStates.set(userId, parsed)
    return parsed
  }

  async function userState (userId: string) {
    const trusted = authCache.trusted
    const cached = trusted < 0 ? null : await store.get(userKey(userId)).catch(() => null)
    if (cached) {
      const parsed = parsedState(userId, cached)
      if (parsed.generation >= trusted) return parsed.state
    }
    return refreshUserState(userId)
  }

  function sign (claims: Omit<TokenClaims, 'iat' | 'exp' | 'jti'>, ttlMs: number, capAt: number) {
    const issuedAt = now()
    const exp = Math.floor(Math.min(issuedAt + ttlMs, capAt) / 1000)
    return { token: fastify.jwt.sign({ ...claims, jti: randomUUID(), iat: Math.floor(issuedAt / 1000), exp }), exp }
  }

  async function bundleFor (account: User, row: Session, generation: number): Promise<TokenBundle> {
    const state = await refreshUserState(account.user_id)
    const profile = toPublicUser(account)
    const expiresAt = row.expires_at.getTime()
    const access = sign({ sub: account.user_id, sid: row.session_id, type: 'access' }, config.ACCESS_TOKEN_EXPIRY_MINUTES * minute, expiresAt)
    const sessionToken = sign({
      sub: account.user_id, sid: row.session_id, type: 'session', pv: state.pv, perms: state.p, su: state.su, lu: state.lu, profile
    }, config.SESSION_TOKEN_EXPIRY_MINUTES * minute, expiresAt)
    const idleEnds = Math.min(now() + config.SESSION_IDLE_TIMEOUT_MINUTES * minute, expiresAt)
    return {
      access_token: access.token,
      session_token: sessionToken.token,
      refresh_token: refreshTokenOf(row, generation),
      session_id: row.session_id,
      token_type: 'bearer',
      expires_in: Math.max(0, access.exp - Math.floor(now() / 1000)),
      session_expires_in: Math.max(0, sessionToken.exp - Math.floor(now() / 1000)),
      refresh_expires_in: Math.max(0, Math.floor((idleEnds - now()) / 1000)),
      user: profile
    }
  }

  async function markRevoked (sessions: Array<{ id: string, userId: string }>) {
    if (sessions.length === 0) return
    const ttl = config.REFRESH_TOKEN_EXPIRY_MINUTES * minute
    await writeOrDistrust(Promise.all(sessions.map((s) => store.set(sessionKey(s.userId, s.id), REVOKED, ttl))), 'revocation')
  }

  const service: SessionService = {
    parseRefreshToken,
    refreshUserState,
    userState,

    async create (account, client) {
      const createdAt = new Date(now())
      const [row] = await insertSession.execute({
        user_id: account.user_id,
        refresh_secret: randomBytes(24).toString('base64url'),
        refresh_generation: 0,
        auth_method: client.method,
        device_name: describeDevice(client.userAgent),
        ip_address: client.ip,
        user_agent: client.userAgent?.slice(0, 512) ?? null,
        created_at: createdAt,
        last_used_at: createdAt,
        expires_at: new Date(createdAt.getTime() + config.REFRESH_TOKEN_EXPIRY_MINUTES * minute)
      } satisfies Omit<NewSession, 'session_id'>)
      return bundleFor(account, row, 0)
    },

    async refresh (refreshToken, client) {
      const parsed = parseRefreshToken(refreshToken)
      if (!parsed) throw new AppError('AUTH_REFRESH_INVALID')
      const outcome = await db.transaction(async (tx) => {
        const [row] = await tx.select().from(session).where(eq(session.session_id, parsed.sessionId)).for('update')
        if (!row || !safeEqual(refreshToken, refreshTokenOf(row, parsed.generation))) return { kind: 'invalid' as const }
        // Per session only once the MAC proves the caller holds one of its tokens:
        // forged `<sid>.<n>.x` tokens cannot spend the owner's budget (SR-10).
        // Those count against the route's per-IP limit alone.
        await fastify.throttle.limit('refresh', row.session_id, config.AUTH_RATE_LIMIT_PER_IDENTIFIER, minute)
        const at = now()
        const idleLimit = row.last_used_at.getTime() + config.SESSION_IDLE_TIMEOUT_MINUTES * minute
        if (row.revoked_at || row.expires_at.getTime() <= at || idleLimit <= at) return { kind: 'invalid' as const }
        if (parsed.generation === row.refresh_generation) {
          const [next] = await tx.update(session)
            .set({ refresh_generation: row.refresh_generation + 1, rotated_at: new Date(at), last_used_at: new Date(at), ip_address: client.ip })
            .where(eq(session.session_id, row.session_id)).returning()
          return { kind: 'rotated' as const, row: next, generation: next.refresh_generation }
        }
        const graceEnds = (row.rotated_at?.getTime() ?? 0) + config.REFRESH_REUSE_GRACE_SECONDS * 1000
        if (parsed.generation === row.refresh_generation - 1 && at <= graceEnds) {
          return { kind: 'grace' as const, row, generation: row.refresh_generation }
        }
        await tx.update(session).set({ revoked_at: new Date(at), revoked_reason: 'refresh_token_reuse' }).where(eq(session.session_id, row.session_id))
        return { kind: 'reused' as const, row }
      })
      if (outcome.kind === 'invalid') throw new AppError('AUTH_REFRESH_INVALID')
      if (outcome.kind === 'reused') {
        await markRevoked([{ id: outcome.row.session_id, userId: outcome.row.user_id }])
        throw Object.assign(new AppError('AUTH_REFRESH_REUSED'), { sessionId: outcome.row.session_id, userId: outcome.row.user_id })
      }
      const account = await users.findById(outcome.row.user_id)
      if (!account || !account.is_active) {
        await service.revoke(outcome.row.session_id, 'user_inactive')
        throw new AppError('AUTH_REFRESH_INVALID')
      }
      return { bundle: await bundleFor(account, outcome.row, outcome.generation), userId: account.user_id, sessionId: outcome.row.session_id, reused: outcome.kind === 'grace' }
    },

    async permissionsChanged (userIds) {
      const unique = [...new Set(userIds)]
      if (unique.length === 0) return
      await db.update(user).set({ permission_version: sql`${user.permission_version} + 1` }).where(inArray(user.user_id, unique))
      await Promise.all(unique.map((id) => refreshUserState(id)))
    },

    async revoke (sessionId, reason) {
      const rows = await db.update(session).set({ revoked_at: new Date(now()), revoked_reason: reason })
        .where(and(eq(session.session_id, sessionId), isNull(session.revoked_at))).returning({ id: session.session_id, userId: session.user_id })
      // Already revoked (e.g. in the caller's transaction): the cache entry is written all the same; its key needs the owner.
      const revoked = rows.length > 0 ? rows : await db.select({ id: session.session_id, userId: session.user_id }).from(session).where(eq(session.session_id, sessionId))
      await markRevoked(revoked)
      return rows.length > 0
    },

    async revokeAllForUser (userId, reason, exceptSessionId) {
      const rows = await db.update(session).set({ revoked_at: new Date(now()), revoked_reason: reason })
        .where(and(
          eq(session.user_id, userId),
          isNull(session.revoked_at),
          exceptSessionId ? ne(session.session_id, exceptSessionId) : sql`true`
        )).returning({ id: session.session_id })
      await markRevoked(rows.map((r) => ({ id: r.id, userId })))
      return rows.length
    },

    async listActive (userId) {
      return db.select().from(session).where(and(
        eq(session.user_id, userId),
        isNull(session.revoked_at),
        gt(session.expires_at, new Date(now()))
      )).orderBy(sql`${session.last_used_at} desc`)
    },

    async findActive (userId, sessionId) {
      // An ISO string: drizzle passes placeholder values to the driver unencoded.
      const [row] = await activeById.execute({ userId, sessionId, now: new Date(now()).toISOString() })
      return row
    },

    async findByRefreshToken (userId, refreshToken) {
      const parsed = parseRefreshToken(refreshToken)
      if (!parsed) return undefined
      const row = await service.findActive(userId, parsed.sessionId)
      const current = row !== undefined && row.refresh_generation === parsed.generation && safeEqual(refreshToken, refreshTokenOf(row, parsed.generation))
      return current ? row : undefined
    },

    async check (claims) {
      // Read once, before Postgres is asked: entries written below carry the generation
      // their Postgres read is at least as new as. -1: the cache is not trusted right now.
      const trusted = authCache.trusted
      let cachedSession: string | null = null
      let cachedUser: string | null = null
      if (trusted >= 0) {
        try {
          [cachedSession, cachedUser] = await store.mget([sessionKey(claims.sub, claims.sid), userKey(claims.sub)])
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
          .from(session).where(eq(session.session_id, claims.sid))
        const active = row !== undefined && row.user_id === claims.sub && row.revoked_at === null && row.expires_at.getTime() > now()
        if (trusted >= 0) {
          const entry = active ? `a:${row.expires_at.getTime()}:${trusted}` : REVOKED
          const ttl = Math.max(active ? Math.min(cacheMs, row.expires_at.getTime() - now()) : config.REFRESH_TOKEN_EXPIRY_MINUTES * minute, 1000)
          // NX, or replacing only the stale entry that was read: a revocation written meanwhile is never overwritten.
          const write = cachedSession === null ? store.setNx(sessionKey(claims.sub, claims.sid), entry, ttl) : store.compareAndSet(sessionKey(claims.sub, claims.sid), cachedSession, entry, ttl)
          await write.catch(() => {})
        }
        if (!active) throw new AppError('AUTH_SESSION_REVOKED')
        expiresAt = row.expires_at.getTime()
      }
      if (expiresAt <= now()) throw new AppError('AUTH_SESSION_REVOKED')
      const cached = cachedUser === null ? undefined : parsedState(claims.sub, cachedUser)
      let state: UserState
      if (cached !== undefined && cached.generation >= trusted) {
        state = cached.state
      } else {
        const loaded = await loadUserState(claims.sub)
        state = loaded ?? { a: false, pv: -1, lu: 0, su: false, p: [], l: 'en' }
        if (trusted >= 0) {
          const entry = `${trusted}:${JSON.stringify(state)}`
          const write = cachedUser === null ? store.setNx(userKey(claims.sub), entry, cacheMs) : store.compareAndSet(userKey(claims.sub), cachedUser, entry, cacheMs)
          await write.catch(() => {})
        }
      }
      if (!state.a) throw new AppError('AUTH_SESSION_REVOKED')
      return state
    }
  }
  fastify.decorate('sessions', service)
}, { name: 'sessions', dependencies: ['db', 'store', 'auth-cache', 'jwt', 'users', 'throttle'] })

/** The expiry (ms) of an active-session entry `a:<expires>:<generation>` written under `trusted` or later; NaN when older or malformed. */
function currentSessionEntry (entry: string, trusted: number): number {
  const separator = entry.indexOf(':', 2)
  if (separator < 0 || !(Number(entry.slice(separator + 1)) >= trusted)) return NaN
  return Number(entry.slice(2, separator))
}

function safeEqual (a: string, b: string) {
  const x = Buffer.from(a)
  const y = Buffer.from(b)
  return x.length === y.length && timingSafeEqual(x, y)
}

/** A short, human label of the device ("Chrome on macOS"), for the sessions list. */
export function describeDevice (userAgent?: string): string | null {
  if (!userAgent) return null
  const { browser, os, device } = UAParser(userAgent)
  const label = [browser.name, os.name && `on ${os.name}`, device.model && `(${device.model})`].filter(Boolean).join(' ')
  return label || userAgent.slice(0, 60)
}
