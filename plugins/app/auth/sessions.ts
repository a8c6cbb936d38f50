import fp from 'fastify-plugin'
import { randomBytes } from 'node:crypto'
import { and, eq, gt, isNull, ne, sql } from 'drizzle-orm'
import { UAParser } from 'ua-parser-js'
import { session, type NewSession, type Session, type User } from '../../../db/schema/index.ts'
import type { Database } from '../../../db/client.ts'
import { AppError } from '../../../schemas/errors.ts'
import type { Assurance, TokenBundle } from './tokens.ts'
import type { UserState } from './user-state.ts'
import type { SessionView } from '../../../schemas/auth.ts'
import type { AuthMethod } from '../../../domain/enums.ts'

/**
 * Sessions: the one module that writes the `session` table (one row per login, or
 * device). A session's tokens are made by tokens.ts; whether a request's session is
 * still active is answered by user-state.ts from the cache, which every revocation
 * here updates at once.
 *
 * Refresh tokens: only the generation is stored. Rotating bumps it; the previous
 * generation stays usable for a short grace window and then gets the very same new
 * tokens (concurrent refreshes both succeed); any older replay revokes the session
 * (SR-18).
 *
 * Methods that write accept `{ tx }` to join the caller's transaction. The cache
 * learns a revocation at once, before that transaction commits: if it rolls back,
 * the sessions stay refused (fail closed) until their owner logs in again.
 */
export interface ClientContext {
  ip: string | null
  userAgent?: string | null
  method: AuthMethod
  /** The session's amr/aal claims; by default the method's own (pwd or otp) at aal 1. */
  assurance?: Assurance
}

/** The assurance a login method gives on its own. */
export const defaultAssurance = (method: ClientContext['method']): Assurance => ({ amr: [method === 'otp' ? 'otp' : 'pwd'], aal: 1 })

export interface WriteOptions { tx?: Database }

export interface SessionService {
  /** Opens a session for a login and answers its tokens. */
  create: (account: User, client: ClientContext) => Promise<TokenBundle>
  refresh: (refreshToken: string, client: { ip: string }) => Promise<{ bundle: TokenBundle, userId: string, sessionId: string, reused: boolean }>
  /** Marks one session revoked (no-op when already). Returns whether it was active. */
  revoke: (sessionId: string, reason: string, options?: WriteOptions) => Promise<boolean>
  /** Revokes every active session of a user, but `except`. Returns how many. */
  revokeAllForUser: (userId: string, reason: string, options?: WriteOptions & { except?: string }) => Promise<number>
  /** Deletes every session row of a user (account deletion); the cache treats them as revoked. Returns how many. */
  deleteAllForUser: (userId: string, options?: WriteOptions) => Promise<number>
  listActive: (userId: string) => Promise<Session[]>
  /** One active session of the user (not revoked, not expired); undefined otherwise. */
  findActive: (userId: string, sessionId: string) => Promise<Session | undefined>
  /** When a session was created, i.e. when its login took place; undefined for an unknown session. */
  loggedInAt: (sessionId: string) => Promise<Date | undefined>
  /** The user's active session whose current refresh token this is (MAC and generation); undefined otherwise. */
  findByRefreshToken: (userId: string, refreshToken: string) => Promise<Session | undefined>
  parseRefreshToken: (token: string) => { sessionId: string, generation: number } | null
  /** user-state.ts's `refresh`, `current` and `permissionsChanged`, where callers have long found them. */
  refreshUserState: (userId: string) => Promise<UserState>
  userState: (userId: string) => Promise<UserState>
  permissionsChanged: (userIds: string[]) => Promise<void>
}

declare module 'fastify' {
  interface FastifyInstance { sessions: SessionService }
}

export default fp(async (fastify) => {
  const { authState, config, db, tokens, users } = fastify
  const minute = 60_000
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
    amr: sql.placeholder('amr'),
    aal: sql.placeholder('aal'),
    device_name: sql.placeholder('device_name'),
    ip_address: sql.placeholder('ip_address'),
    user_agent: sql.placeholder('user_agent'),
    created_at: sql.placeholder('created_at'),
    last_used_at: sql.placeholder('last_used_at'),
    expires_at: sql.placeholder('expires_at')
  }).returning().prepare('session_insert')

  const { parseRefreshToken } = tokens

  async function bundleFor (account: User, row: Session, generation: number): Promise<TokenBundle> {
    const state = await authState.refresh(account.user_id)
    return tokens.issue(account, row, generation, state)
  }

  const service: SessionService = {
    parseRefreshToken,
    refreshUserState: authState.refresh,
    userState: authState.current,
    permissionsChanged: authState.permissionsChanged,

    async create (account, client) {
      const createdAt = new Date(now())
      const assurance = client.assurance ?? defaultAssurance(client.method)
      const [row] = await insertSession.execute({
        user_id: account.user_id,
        refresh_secret: randomBytes(24).toString('base64url'),
        refresh_generation: 0,
        auth_method: client.method,
        amr: assurance.amr.join(' '),
        aal: assurance.aal,
        device_name: describeDevice(client.userAgent ?? undefined),
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
        if (!row || !tokens.refreshTokenMatches(row, parsed.generation, refreshToken)) return { kind: 'invalid' as const }
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
        await authState.markRevoked([{ id: outcome.row.session_id, userId: outcome.row.user_id }])
        throw Object.assign(new AppError('AUTH_REFRESH_REUSED'), { sessionId: outcome.row.session_id, userId: outcome.row.user_id })
      }
      const account = await users.findById(outcome.row.user_id)
      if (!account || !account.is_active) {
        await service.revoke(outcome.row.session_id, 'user_inactive')
        throw new AppError('AUTH_REFRESH_INVALID')
      }
      return { bundle: await bundleFor(account, outcome.row, outcome.generation), userId: account.user_id, sessionId: outcome.row.session_id, reused: outcome.kind === 'grace' }
    },

    async revoke (sessionId, reason, { tx = db } = {}) {
      const rows = await tx.update(session).set({ revoked_at: new Date(now()), revoked_reason: reason })
        .where(and(eq(session.session_id, sessionId), isNull(session.revoked_at))).returning({ id: session.session_id, userId: session.user_id })
      // Already revoked (e.g. in the caller's transaction): the cache entry is written all the same; its key needs the owner.
      const revoked = rows.length > 0 ? rows : await tx.select({ id: session.session_id, userId: session.user_id }).from(session).where(eq(session.session_id, sessionId))
      await authState.markRevoked(revoked)
      return rows.length > 0
    },

    async revokeAllForUser (userId, reason, { tx = db, except } = {}) {
      const rows = await tx.update(session).set({ revoked_at: new Date(now()), revoked_reason: reason })
        .where(and(
          eq(session.user_id, userId),
          isNull(session.revoked_at),
          except ? ne(session.session_id, except) : sql`true`
        )).returning({ id: session.session_id })
      await authState.markRevoked(rows.map((r) => ({ id: r.id, userId })))
      return rows.length
    },

    async deleteAllForUser (userId, { tx = db } = {}) {
      const rows = await tx.delete(session).where(eq(session.user_id, userId)).returning({ id: session.session_id })
      await authState.markRevoked(rows.map((r) => ({ id: r.id, userId })))
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

    async loggedInAt (sessionId) {
      const [row] = await db.select({ created_at: session.created_at }).from(session).where(eq(session.session_id, sessionId))
      return row?.created_at
    },

    async findByRefreshToken (userId, refreshToken) {
      const parsed = parseRefreshToken(refreshToken)
      if (!parsed) return undefined
      const row = await service.findActive(userId, parsed.sessionId)
      const current = row !== undefined && row.refresh_generation === parsed.generation && tokens.refreshTokenMatches(row, parsed.generation, refreshToken)
      return current ? row : undefined
    }
  }
  fastify.decorate('sessions', service)
}, { name: 'sessions', dependencies: ['db', 'auth-state', 'tokens', 'users', 'throttle'] })

/** A short, human label of the device ("Chrome on macOS"), for the sessions list. */
/** A session as the session lists show it; `current` when it is the caller's own. */
export function toSessionView (s: Session, currentSessionId: string | null = null): SessionView {
  return {
    session_id: s.session_id,
    device_name: s.device_name,
    ip_address: s.ip_address,
    user_agent: s.user_agent,
    auth_method: s.auth_method,
    created_at: s.created_at.toISOString(),
    last_used_at: s.last_used_at.toISOString(),
    expires_at: s.expires_at.toISOString(),
    current: s.session_id === currentSessionId
  }
}

export function describeDevice (userAgent?: string): string | null {
  if (!userAgent) return null
  const { browser, os, device } = UAParser(userAgent)
  const label = [browser.name, os.name && `on ${os.name}`, device.model && `(${device.model})`].filter(Boolean).join(' ')
  return label || userAgent.slice(0, 60)
}
