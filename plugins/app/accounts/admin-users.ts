import fp from 'fastify-plugin'
import type { NewUser, User } from '../../../db/schema/index.ts'
import { DEFAULT_USER_GROUP } from '../../../db/defaults.ts'
import { AppError } from '../../../schemas/errors.ts'
import { canonicalTimeZone } from '../../../schemas/time-zone.ts'
import type { InvitationSentView, UserCreateInput, UserRemovedView, UserUpdateInput } from '../../../schemas/admin-users.ts'
import type { SessionView } from '../../../schemas/auth.ts'
import type { Database } from '../../../db/client.ts'
import type { AuthContext } from '../auth/authenticate.ts'
import type { Caller } from '../auth/caller.ts'
import { requirePhone, type IssueResult } from '../auth/otp.ts'
import { keyOf } from '../auth/throttle.ts'
import { toSessionView } from '../auth/sessions.ts'
import type { Channel } from '../notifications/notify.ts'
import { assertMayChangeMembership, requireActor, touchesSuperAdmin } from '../access-control/rules.ts'
import { normalizeEmail } from './contact.ts'
import { addressFor } from './invitations.ts'
import { canonicalCountry } from './profiles.ts'
import { toPublicUser, type PublicUser } from './users.ts'

/**
 * Administrators managing other users' accounts (P/users/{user_id}...): create
 * (with an invitation when no password is given), read, update, delete, their
 * sessions, a password reset code, lifting a lockout.
 *
 * The escalation rules of SR-27 apply as to group changes: the groups a new
 * account joins must grant only permissions the actor holds (so only super admins
 * create super admins), and only super admins change anything of a super admin's
 * account. Every change writes an audit row naming the actor and the target;
 * whatever affects access (status, deletion, sessions) reaches the target's next
 * request through the shared auth state (`sessions.refreshUserState`, revocations).
 */
export interface AdminUserService {
  get: (userId: string) => Promise<PublicUser>
  create: (caller: Caller, input: UserCreateInput) => Promise<{ user: PublicUser, invitation: InvitationSentView | null }>
  update: (caller: Caller, userId: string, input: UserUpdateInput) => Promise<PublicUser>
  remove: (caller: Caller, userId: string) => Promise<UserRemovedView>
  sessions: (userId: string) => Promise<SessionView[]>
  /** Ends one session of the user, or all of them; how many were active. */
  revokeSessions: (caller: Caller, userId: string, sessionId?: string) => Promise<number>
  /** Sends a reset_password code to the user (redeemed at forget-password); the password is never shown. */
  sendPasswordReset: (caller: Caller, userId: string, channel?: Channel) => Promise<IssueResult>
  /** Clears the login lockout (and its failure count); whether a lock or failures were there. */
  unlock: (caller: Caller, userId: string) => Promise<boolean>
  resendInvitation: (caller: Caller, userId: string, channel?: Channel) => Promise<InvitationSentView>
}

declare module 'fastify' {
  interface FastifyInstance { adminUsers: AdminUserService }
}

const invalid = (field: string, message: string) => new AppError('VALIDATION_ERROR', { details: [{ field: `body/${field}`, message }] })

export default fp(async (fastify) => {
  const { db, users, groupRepository, sessions, store } = fastify
  const now = () => new Date(fastify.now())

  /** The account unless unknown or anonymised (deleted): gone for every purpose of the API. */
  async function existing (userId: string, tx?: Database): Promise<User> {
    const row = tx ? await users.lock(tx, userId) : await users.findById(userId)
    if (!row || row.status === 'deleted') throw new AppError('USER_NOT_FOUND')
    return row
  }

  /** SR-27: only super admins change anything of a super admin's account. */
  async function assertMayTouch (actor: AuthContext, userId: string, tx?: Database) {
    if (!actor.superAdmin && await groupRepository.isSuperAdminMember(userId, tx)) {
      throw new AppError('PRIVILEGE_ESCALATION', { details: { reason: 'only super admins change a super admin\'s account' } })
    }
  }

  /** The target of a change: exists, and the actor may touch it. */
  async function target (caller: Caller, userId: string): Promise<User> {
    const actor = requireActor(caller)
    const row = await existing(userId)
    await assertMayTouch(actor, userId)
    return row
  }

  function updateColumns (input: UserUpdateInput, before: User): Partial<NewUser> {
    const values: Partial<NewUser> = {}
    if (input.email !== undefined) values.email = normalizeEmail(input.email)
    if (input.phone_number !== undefined) values.phone_number = input.phone_number === null ? null : requirePhone(input.phone_number)
    for (const field of ['user_name', 'first_name', 'last_name', 'bio'] as const) {
      if (input[field] !== undefined) values[field] = input[field]
    }
    if (input.country !== undefined) values.country = input.country === null ? null : canonicalCountry(input.country)
    if (input.language !== undefined) values.language = input.language
    if (input.timezone !== undefined) {
      const zone = canonicalTimeZone(input.timezone)
      if (zone === undefined) throw invalid('timezone', 'must be an IANA time zone name, e.g. Europe/Paris')
      values.timezone = zone
    }
    // A new address is unverified unless the body says otherwise.
    const emailChanged = values.email !== undefined && values.email !== before.email?.toLowerCase()
    const phoneChanged = values.phone_number !== undefined && values.phone_number !== before.phone_number
    if (input.is_email_verified !== undefined) values.is_email_verified = input.is_email_verified
    else if (emailChanged) values.is_email_verified = false
    if (input.is_phone_verified !== undefined) values.is_phone_verified = input.is_phone_verified
    else if (phoneChanged) values.is_phone_verified = false
    const email = values.email !== undefined ? values.email : before.email
    const phone = values.phone_number !== undefined ? values.phone_number : before.phone_number
    if (!email && !phone) throw invalid('phone_number', 'an account keeps an email address or a phone number')
    if (values.is_email_verified && !email) throw invalid('is_email_verified', 'the account has no email address')
    if (values.is_phone_verified && !phone) throw invalid('is_phone_verified', 'the account has no phone number')
    return values
  }

  const service: AdminUserService = {
    get: async (userId) => toPublicUser(await existing(userId)),

    async create (caller, input) {
      const actor = requireActor(caller)
      if (input.email === undefined && input.phone_number === undefined) throw invalid('email', 'send an email address, a phone number or both')
      const email = input.email === undefined ? null : normalizeEmail(input.email)
      const phone = input.phone_number === undefined ? null : requirePhone(input.phone_number)
      if (input.is_email_verified && !email) throw invalid('is_email_verified', 'no email address was given')
      if (input.is_phone_verified && !phone) throw invalid('is_phone_verified', 'no phone number was given')
      const zone = input.timezone === undefined ? undefined : canonicalTimeZone(input.timezone)
      if (input.timezone !== undefined && zone === undefined) throw invalid('timezone', 'must be an IANA time zone name, e.g. Europe/Paris')
      if (input.password !== undefined) fastify.passwords.check(input.password)
      const hash = input.password === undefined ? null : await fastify.passwords.hash(input.password)
      const at = now()
      const { row, groups } = await db.transaction(async (tx) => {
        const named = await groupRepository.resolve(input.groups ?? [DEFAULT_USER_GROUP], tx)
        // SR-27: the same rule as adding an existing user to these groups, except for the
        // default group, which every account gets at sign-up without anyone granting it.
        const checked = named.filter((g) => g.codename !== DEFAULT_USER_GROUP)
        const granted = await groupRepository.permissionsOf(checked.map((g) => g.group_id), tx)
        assertMayChangeMembership(actor, checked, [], new Map([...granted].map(([id, perms]) => [id, perms.map((p) => p.codename)])))
        const inactive = named.filter((g) => !g.is_active).map((g) => g.codename)
        if (inactive.length > 0) throw new AppError('CONFLICT', { details: { reason: 'group_inactive', groups: inactive } })
        const created = await users.create({
          email,
          phone_number: phone,
          user_name: input.user_name ?? null,
          password: hash,
          password_changed_at: hash ? at : null,
          auth_type: email ? 'email' : 'phone',
          user_type: 'user',
          first_name: input.first_name ?? null,
          last_name: input.last_name ?? null,
          language: input.language ?? caller.lang,
          ...(zone ? { timezone: zone } : {}),
          country: input.country === undefined ? null : canonicalCountry(input.country),
          is_email_verified: input.is_email_verified ?? false,
          is_phone_verified: input.is_phone_verified ?? false,
          created_at: at,
          last_updated: at
        }, tx)
        await groupRepository.changeMemberships(created.user_id, { add: named.map((g) => g.group_id), remove: [] }, tx)
        return { row: created, groups: named }
      })
      await fastify.audit(caller, {
        action: 'user_create',
        module: 'users',
        targetUserId: row.user_id,
        level: touchesSuperAdmin(groups) ? 'warning' : 'info',
        metadata: { groups: groups.map((g) => g.codename), invited: hash === null }
      })
      // The account exists even when the invitation cannot be delivered: it can be resent.
      const invitation = hash === null ? await fastify.invitations.send(caller, row, input.invitation_channel) : null
      return { user: toPublicUser(row), invitation }
    },

    async update (caller, userId, input) {
      const actor = requireActor(caller)
      const { is_active: active, ...fields } = input
      const { row, changed } = await db.transaction(async (tx) => {
        const before = await existing(userId, tx)
        await assertMayTouch(actor, userId, tx)
        const values = updateColumns(fields, before)
        const names = Object.keys(values).filter((k) => values[k as keyof NewUser] !== before[k as keyof User])
        if (names.length === 0) return { row: before, changed: names }
        return { row: await users.update(userId, values, tx), changed: names.sort() }
      })
      if (changed.length > 0) {
        await sessions.refreshUserState(userId)
        await fastify.audit(caller, { action: 'user_update', module: 'users', targetUserId: userId, metadata: { fields: changed } })
      }
      // Status changes go through the one path that also signs the account out (and keeps a super admin active).
      if (active !== undefined) return await fastify.accounts.setActive(caller, userId, active)
      return toPublicUser(row)
    },

    async remove (caller, userId) {
      const actor = requireActor(caller)
      if (actor.userId === userId) throw new AppError('CONFLICT', { details: { reason: 'delete your own account through DELETE P/settings' } })
      const revoked = await db.transaction(async (tx) => {
        const guard = await groupRepository.lockSuperAdmins(tx)
        await existing(userId, tx)
        await assertMayTouch(actor, userId, tx)
        await guard.assertOneRemains([userId])
        // The session rows go and their revocations reach the shared cache: the tokens fail on the next request.
        const count = await sessions.deleteAllForUser(userId, { tx })
        await groupRepository.removeAllMemberships(userId, tx)
        // Personal fields cleared; the activity rows keep the user id (SR-38).
        await users.anonymise(userId, tx)
        return count
      })
      await sessions.refreshUserState(userId)
      await fastify.invitations.cancel(userId)
      await fastify.audit(caller, { action: 'user_delete', module: 'users', level: 'warning', targetUserId: userId, metadata: { revoked_sessions: revoked } })
      return { user_id: userId, status: 'deleted', revoked_sessions: revoked }
    },

    async sessions (userId) {
      await existing(userId)
      const rows = await sessions.listActive(userId)
      return rows.map((s) => toSessionView(s))
    },

    async revokeSessions (caller, userId, sessionId) {
      await target(caller, userId)
      let revoked: number
      if (sessionId === undefined) {
        revoked = await sessions.revokeAllForUser(userId, 'revoked_by_admin')
      } else {
        if (!(await sessions.findActive(userId, sessionId))) throw new AppError('NOT_FOUND', { details: { reason: 'no active session of this user has that id' } })
        revoked = (await sessions.revoke(sessionId, 'revoked_by_admin')) ? 1 : 0
      }
      await fastify.audit(caller, {
        action: 'user_sessions_revoke',
        module: 'users',
        level: 'warning',
        targetUserId: userId,
        metadata: { revoked_sessions: revoked, ...(sessionId ? { session_id: sessionId } : { scope: 'all' }) }
      })
      return revoked
    },

    async sendPasswordReset (caller, userId, requested) {
      const account = await target(caller, userId)
      const channel: Channel = requested ?? (account.email ? 'email' : 'sms')
      const destination = addressFor(account, channel)
      if (!destination) throw new AppError('NO_CONTACT_ADDRESS', { details: { channel } })
      // The forget-password machinery: a reset_password code the user redeems at P/auth/forget-password.
      const sent = await fastify.otp.issue(caller, { purpose: 'reset_password', destination, channel, lang: account.language, userId })
      await fastify.audit(caller, { action: 'user_password_reset_sent', module: 'users', targetUserId: userId, metadata: { channel, destination: sent.destination } })
      return sent
    },

    async unlock (caller, userId) {
      await target(caller, userId)
      // The account's lockout key (auth/login.ts): `user:<id>`.
      const lockKey = `user:${userId}`
      const id = keyOf(lockKey)
      const locked = (await store.get(`lock:${id}`)) !== null || (await store.get(`fail:${id}`)) !== null
      await fastify.throttle.clearFailures(lockKey)
      await fastify.audit(caller, { action: 'user_unlock', module: 'users', targetUserId: userId, metadata: { was_locked: locked } })
      return locked
    },

    async resendInvitation (caller, userId, channel) {
      const account = await target(caller, userId)
      if (account.password) throw new AppError('CONFLICT', { details: { reason: 'the account already has a password; use password-reset' } })
      return await fastify.invitations.send(caller, account, channel)
    }
  }
  fastify.decorate('adminUsers', service)
}, { name: 'admin-users', dependencies: ['db', 'store', 'users', 'group-repository', 'sessions', 'accounts', 'invitations', 'otp', 'passwords', 'throttle', 'activity'] })
