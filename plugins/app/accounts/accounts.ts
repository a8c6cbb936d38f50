import fp from 'fastify-plugin'
import { eq, sql } from 'drizzle-orm'
import { user, type User } from '../../../db/schema/index.ts'
import { DEFAULT_USER_GROUP } from '../../../db/defaults.ts'
import { AppError } from '../../../schemas/errors.ts'
import type { Caller } from '../auth/caller.ts'
import { requireActor } from '../access-control/rules.ts'
import { toPublicUser, type PublicUser } from './users.ts'

/**
 * Account life: sign-up, passwords, email and phone changes, an administrator
 * (de)activating an account, and the re-authentication rule of SR-23. The rows
 * are written by the users repository (`fastify.users`); callers of the
 * self-service writes refresh the cached user state (`sessions.refreshUserState`)
 * afterwards.
 */
export interface SignUpInput {
  email?: string
  phone_number?: string
  /** The address the sign-up code proved: the account's auth type, and its only verified address. */
  verified: 'email' | 'phone'
  /** Null: no password yet (one-time-password logins, then set-password). */
  passwordHash: string | null
  user_name?: string
  first_name?: string
  last_name?: string
  language: string
  timezone?: string
  country?: string
}

export interface Availability { email?: boolean, phone_number?: boolean, user_name?: boolean }

export interface AccountService {
  /** Creates the account (the proven address verified, another one not), in the default group, in one transaction. */
  signUp: (input: SignUpInput) => Promise<User>
  /** Sets a new password hash and `password_changed_at`. */
  setPassword: (userId: string, hash: string) => Promise<User>
  markVerified: (userId: string, channel: 'email' | 'phone') => Promise<User>
  changeEmail: (userId: string, email: string) => Promise<User>
  changePhone: (userId: string, phone: string) => Promise<User>
  /** Which of the given identifiers no account uses (emails and user names case-insensitively). */
  availability: (query: { email?: string, phone_number?: string, user_name?: string }) => Promise<Availability>
  /**
   * SR-23: a sensitive change needs a session created within REAUTH_WINDOW_MINUTES,
   * or the current password (checked with the login lockout). Returns the account.
   */
  assertRecentAuth: (caller: Caller, currentPassword?: string) => Promise<User>
  /** Checks the current password (lockout shared with login); throws AUTH_CURRENT_PASSWORD_INVALID. */
  verifyCurrentPassword: (caller: Caller, account: User, password: string) => Promise<void>
  /**
   * An administrator switches an account on or off (SR-27: only super admins change
   * a super admin's status; the last active super admin stays). Switching off signs
   * out every session.
   */
  setActive: (caller: Caller, userId: string, active: boolean, reason?: string) => Promise<PublicUser>
}

declare module 'fastify' {
  interface FastifyInstance { accounts: AccountService }
}

export default fp(async (fastify) => {
  const { db, config, users, groupRepository } = fastify
  const now = () => new Date(fastify.now())

  const service: AccountService = {
    async signUp (input) {
      const at = now()
      return await db.transaction(async (tx) => {
        const created = await users.create({
          email: input.email ?? null,
          phone_number: input.phone_number ?? null,
          user_name: input.user_name ?? null,
          password: input.passwordHash,
          password_changed_at: input.passwordHash === null ? null : at,
          auth_type: input.verified,
          user_type: 'user',
          first_name: input.first_name ?? null,
          last_name: input.last_name ?? null,
          language: input.language,
          ...(input.timezone ? { timezone: input.timezone } : {}),
          country: input.country ?? null,
          is_email_verified: input.verified === 'email',
          is_phone_verified: input.verified === 'phone',
          created_at: at,
          last_updated: at
        }, tx)
        const added = await groupRepository.addMemberByCodename(created.user_id, DEFAULT_USER_GROUP, tx)
        if (!added) throw new Error(`the default group "${DEFAULT_USER_GROUP}" is missing; run the seed`)
        return created
      })
    },

    setPassword: (userId, hash) => users.update(userId, { password: hash, password_changed_at: now() }),

    markVerified: (userId, channel) => users.update(userId, channel === 'email' ? { is_email_verified: true } : { is_phone_verified: true }),

    changeEmail: (userId, email) => users.update(userId, { email, is_email_verified: true }),

    changePhone: (userId, phone) => users.update(userId, { phone_number: phone, is_phone_verified: true }),

    async availability (query) {
      const [emailRows, phoneRows, nameRows] = await Promise.all([
        query.email === undefined ? [] : db.select({ id: user.user_id }).from(user).where(sql`lower(${user.email}) = ${query.email.toLowerCase()}`).limit(1),
        query.phone_number === undefined ? [] : db.select({ id: user.user_id }).from(user).where(eq(user.phone_number, query.phone_number)).limit(1),
        query.user_name === undefined ? [] : db.select({ id: user.user_id }).from(user).where(sql`lower(${user.user_name}) = ${query.user_name.toLowerCase()}`).limit(1)
      ])
      return {
        ...(query.email !== undefined ? { email: emailRows.length === 0 } : {}),
        ...(query.phone_number !== undefined ? { phone_number: phoneRows.length === 0 } : {}),
        ...(query.user_name !== undefined ? { user_name: nameRows.length === 0 } : {})
      }
    },

    async verifyCurrentPassword (caller, account, password) {
      const lockKey = `user:${account.user_id}`
      if (!account.password) throw new AppError('PASSWORD_NOT_SET')
      // Counted before the hash, like a login (SR-9): the account's one lockout.
      const { lockedForSeconds } = await fastify.throttle.reserveAttempt(lockKey)
      const { ok } = await fastify.passwords.verify(account.password, password)
      if (!ok) {
        await fastify.audit(caller, { action: 'reauth_failed', level: 'warning', targetUserId: account.user_id, metadata: { locked_for_seconds: lockedForSeconds } })
        throw new AppError('AUTH_CURRENT_PASSWORD_INVALID')
      }
      await fastify.throttle.clearFailures(lockKey)
    },

    async assertRecentAuth (caller, currentPassword) {
      const actor = requireActor(caller)
      const account = await users.findById(actor.userId)
      if (!account) throw new AppError('AUTH_SESSION_REVOKED')
      if (currentPassword !== undefined) {
        await service.verifyCurrentPassword(caller, account, currentPassword)
        return account
      }
      // The session row's creation is the login; refreshing tokens does not make a login fresh.
      const current = caller.sessionId ? await fastify.sessions.findActive(actor.userId, caller.sessionId) : undefined
      const fresh = current !== undefined && fastify.now() - current.created_at.getTime() <= config.REAUTH_WINDOW_MINUTES * 60_000
      if (!fresh) throw new AppError('AUTH_REAUTH_REQUIRED')
      return account
    },

    async setActive (caller, userId, active, reason) {
      const actor = requireActor(caller)
      const row = await db.transaction(async (tx) => {
        const guard = await groupRepository.lockSuperAdmins(tx)
        const target = await users.lock(tx, userId)
        // An anonymised (deleted) account is gone for every purpose of the API.
        if (!target || target.status === 'deleted') throw new AppError('USER_NOT_FOUND')
        if (!actor.superAdmin && await groupRepository.isSuperAdminMember(userId, tx)) {
          throw new AppError('PRIVILEGE_ESCALATION', { details: { reason: 'only super admins change the status of a super admin' } })
        }
        if (!active) await guard.assertOneRemains([userId])
        const wasActive = target.is_active && target.status === 'active'
        if (wasActive === active) return target
        return await users.update(userId, active
          ? { is_active: true, status: 'active', deactivated_at: null }
          : { is_active: false, status: 'inactive', deactivated_at: now() }, tx)
      })
      const revoked = active ? 0 : await fastify.sessions.revokeAllForUser(userId, 'deactivated_by_admin')
      await fastify.sessions.refreshUserState(userId)
      await fastify.audit(caller, {
        action: active ? 'user_activate' : 'user_deactivate',
        module: 'users',
        targetUserId: userId,
        level: active ? 'info' : 'warning',
        metadata: { revoked_sessions: revoked, ...(reason ? { reason } : {}) }
      })
      return toPublicUser(row)
    }
  }
  fastify.decorate('accounts', service)
}, { name: 'accounts', dependencies: ['db', 'users', 'group-repository', 'sessions', 'passwords', 'throttle', 'activity'] })
