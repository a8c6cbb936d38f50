import { createHmac, randomBytes } from 'node:crypto'
import fp from 'fastify-plugin'
import type { User } from '../../../db/schema/index.ts'
import { AppError } from '../../../schemas/errors.ts'
import type { InvitationSentView } from '../../../schemas/admin-users.ts'
import { DeliveryError, type Channel } from '../notifications/notify.ts'
import type { Caller } from '../auth/caller.ts'
import { maskAddress } from './contact.ts'
import { toPublicUser, type PublicUser } from './users.ts'

/**
 * Invitations: an account created by an administrator without a password gets a
 * single-use code (through the notification channels) with which its owner sets
 * the password (POST P/auth/accept-invitation).
 *
 * - The code is 32 random bytes; the store keeps only an HMAC of it (key derived
 *   from the server secret), as `inv:c:<mac>` → the account, the address it went
 *   to and the expiry (computed with `fastify.now()`, INVITE_TTL_HOURS), and
 *   `inv:u:<user id>` → the mac of the account's current code, so that a resent
 *   invitation replaces the previous one.
 * - Accepting deletes the record: of concurrent uses only the one whose delete
 *   removed it wins (single use). Any failure is the same INVITATION_INVALID.
 * - Accepting sets the password, marks the address the code went to verified
 *   (receiving the code proves it) and lifts any login lockout.
 */
export interface InvitationService {
  /** Sends a fresh invitation to the account's email (default) or phone; the previous one stops working. */
  send: (caller: Caller, account: User, channel?: Channel) => Promise<InvitationSentView>
  /** Redeems a code: sets the password and marks the address verified. */
  accept: (caller: Caller, code: string, password: string) => Promise<PublicUser>
  /** Voids the account's pending invitation (account deleted, password set by other means). */
  cancel: (userId: string) => Promise<void>
}

declare module 'fastify' {
  interface FastifyInstance { invitations: InvitationService }
}

interface InvitationRecord {
  /** account */
  u: string
  /** the address the code went to: a lower-cased email or an E.164 number */
  d: string
  /** channel */
  c: Channel
  /** expiry, ms since epoch (fastify.now clock) */
  e: number
}

/** The address of a channel: the account's email for email, its phone for sms and whatsapp. */
export function addressFor (account: User, channel: Channel): string | null {
  return channel === 'email' ? account.email?.toLowerCase() ?? null : account.phone_number
}

export default fp(async (fastify) => {
  const { config, store, notify, users } = fastify
  const key = createHmac('sha256', config.JWT_SECRET_KEY!).update('invitation.v1').digest()
  const ttlMs = config.INVITE_TTL_HOURS * 60 * 60 * 1000
  const macOf = (code: string) => createHmac('sha256', key).update(code).digest('base64url')
  const codeKey = (mac: string) => `inv:c:${mac}`
  const userKey = (userId: string) => `inv:u:${userId}`

  async function cancel (userId: string) {
    const current = await store.get(userKey(userId))
    if (current) await store.del(codeKey(current))
    await store.del(userKey(userId))
  }

  const service: InvitationService = {
    async send (caller, account, requested) {
      const channel: Channel = requested ?? (account.email ? 'email' : 'sms')
      const to = addressFor(account, channel)
      if (!to) throw new AppError('NO_CONTACT_ADDRESS', { details: { channel } })
      const code = randomBytes(32).toString('base64url')
      const mac = macOf(code)
      const metadata = { channel, destination: maskAddress(to) }
      try {
        await notify.send({ channel, to, template: 'invitation', lang: account.language, params: { code, hours: config.INVITE_TTL_HOURS }, secrets: [code] })
      } catch (error) {
        if (!(error instanceof DeliveryError)) throw error
        await fastify.audit(caller, { action: 'invitation_delivery_failed', module: 'users', level: 'warning', targetUserId: account.user_id, metadata: { ...metadata, transport: error.transport } })
        throw new AppError('OTP_DELIVERY_FAILED', { cause: error })
      }
      // Stored only once the transport took the message; the previous code stops working.
      await cancel(account.user_id)
      const record: InvitationRecord = { u: account.user_id, d: to, c: channel, e: fastify.now() + ttlMs }
      await store.set(codeKey(mac), JSON.stringify(record), ttlMs)
      await store.set(userKey(account.user_id), mac, ttlMs)
      await fastify.audit(caller, { action: 'invitation_sent', module: 'users', targetUserId: account.user_id, metadata })
      return { channel, destination: metadata.destination, expires_in: config.INVITE_TTL_HOURS * 3600 }
    },

    async accept (caller, code, password) {
      // The password policy first: a refused password does not use up the invitation.
      fastify.passwords.check(password)
      const mac = macOf(code)
      const raw = await store.get(codeKey(mac))
      const record = raw ? JSON.parse(raw) as InvitationRecord : undefined
      const refuse = async (reason: string) => {
        await fastify.audit(caller, { action: 'invitation_failed', module: 'users', level: 'warning', userId: null, targetUserId: record?.u ?? null, metadata: { reason } })
        return new AppError('INVITATION_INVALID')
      }
      if (!record) throw await refuse('unknown')
      if (record.e <= fastify.now()) {
        await store.del(codeKey(mac))
        throw await refuse('expired')
      }
      if (await store.get(userKey(record.u)) !== mac) throw await refuse('superseded')
      // Of concurrent uses, only the one that deletes the record goes on.
      if (await store.del(codeKey(mac)) !== 1) throw await refuse('used')
      await store.del(userKey(record.u))
      const account = await users.findById(record.u)
      if (!account || account.status === 'deleted' || addressFor(account, record.c) !== record.d) throw await refuse('account_changed')
      const hash = await fastify.passwords.hash(password)
      const updated = await users.update(account.user_id, {
        password: hash,
        password_changed_at: new Date(fastify.now()),
        ...(record.c === 'email' ? { is_email_verified: true } : { is_phone_verified: true })
      })
      await fastify.throttle.clearFailures(`user:${account.user_id}`)
      await fastify.sessions.refreshUserState(account.user_id)
      await fastify.audit(caller, { action: 'invitation_accepted', module: 'users', userId: null, targetUserId: account.user_id, metadata: { channel: record.c } })
      notify.notice({ account: updated, template: 'password_set' })
      return toPublicUser(updated)
    },

    cancel
  }
  fastify.decorate('invitations', service)
}, { name: 'invitations', dependencies: ['store', 'notify', 'users', 'passwords', 'throttle', 'sessions', 'activity'] })
