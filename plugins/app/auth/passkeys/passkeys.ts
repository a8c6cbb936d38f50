import fp from 'fastify-plugin'
import { and, eq } from 'drizzle-orm'
import { generateRegistrationOptions, verifyRegistrationResponse, type PublicKeyCredentialCreationOptionsJSON, type RegistrationResponseJSON } from '@simplewebauthn/server'
import { isoBase64URL } from '@simplewebauthn/server/helpers'
import { passkey, type Passkey } from '../../../../db/schema/index.ts'
import { isUniqueViolation } from '../../../../db/errors.ts'
import { relyingParty } from '../../../../config.ts'
import { AppError } from '../../../../schemas/errors.ts'
import type { PasskeySchema } from '../../../../schemas/passkeys.ts'
import { signedIn, type Caller } from '../caller.ts'
import { challengeBytes, issueChallenge, signedChallenge, takeChallenge } from './challenges.ts'

/**
 * Passkeys (WebAuthn, issue 20): registering them for a signed-in account, listing,
 * renaming and removing them. The one module that writes the `passkey` table;
 * sign-in (sign-in.ts) reads through `findByCredentialId` / `listForUser` and
 * records a use through `recordUse`.
 *
 * Registering needs a fresh login, made with the second factor when the account has
 * one (like removing a factor): a passkey is a login credential at aal 2, so a
 * stolen token of an older or weaker session must not add one. Every ceremony
 * requires user verification (PIN, biometrics): the passkey alone stands for two
 * factors. Attestation is `none`: which authenticator made the key is not checked.
 */
export type PasskeyView = typeof PasskeySchema.static

export interface PasskeyService {
  registrationOptions: (caller: Caller) => Promise<PublicKeyCredentialCreationOptionsJSON>
  register: (caller: Caller, credential: RegistrationResponseJSON, name?: string) => Promise<PasskeyView>
  list: (caller: Caller) => Promise<PasskeyView[]>
  rename: (caller: Caller, passkeyId: string, name: string) => Promise<PasskeyView>
  /** Removes one of the caller's passkeys (fresh login, aal 2 when the account has a factor). */
  remove: (caller: Caller, passkeyId: string) => Promise<void>
  findByCredentialId: (credentialId: string) => Promise<Passkey | undefined>
  listForUser: (userId: string) => Promise<Passkey[]>
  /**
   * Records a verified assertion: the new counter and backup state, if the stored
   * counter is still `expectedCounter` (a concurrent use with the same counter loses).
   */
  recordUse: (row: Passkey, use: { counter: number, backedUp: boolean }) => Promise<boolean>
}

declare module 'fastify' {
  interface FastifyInstance { passkeys: PasskeyService }
}

const iso = (d: Date | null) => (d ? d.toISOString() : null)
export const passkeyView = (row: Passkey): PasskeyView => ({
  id: row.passkey_id,
  name: row.name,
  created_at: row.created_at.toISOString(),
  last_used_at: iso(row.last_used_at),
  backed_up: row.backed_up,
  backup_eligible: row.backup_eligible,
  device_type: row.device_type,
  transports: row.transports
})

/** The WebAuthn user handle of an account: its uuid's 16 bytes (opaque, no personal data). */
export const userHandleOf = (userId: string) => Buffer.from(userId.replace(/-/g, ''), 'hex')

export default fp(async (fastify) => {
  const { config, db, store, users } = fastify
  const rp = relyingParty(config)
  const ttl = config.WEBAUTHN_CHALLENGE_TTL_SECONDS
  const now = () => new Date(fastify.now())

  const listForUser = (userId: string) => db.select().from(passkey).where(eq(passkey.user_id, userId)).orderBy(passkey.created_at)

  async function account (caller: Caller) {
    const found = await users.findById(signedIn(caller).userId)
    if (!found) throw new AppError('AUTH_SESSION_REVOKED')
    return found
  }

  /** SR-23: a fresh login; with a second factor, one that proved it (a new aal 2 credential). */
  async function assertFreshStrongLogin (caller: Caller) {
    await fastify.accounts.assertRecentAuth(caller)
    await fastify.mfa.assertStepUp(caller)
  }

  async function owned (caller: Caller, passkeyId: string) {
    const [row] = await db.select().from(passkey).where(and(eq(passkey.passkey_id, passkeyId), eq(passkey.user_id, signedIn(caller).userId)))
    if (!row) throw new AppError('PASSKEY_NOT_FOUND')
    return row
  }

  const service: PasskeyService = {
    listForUser,

    async findByCredentialId (credentialId) {
      const [row] = await db.select().from(passkey).where(eq(passkey.credential_id, credentialId)).limit(1)
      return row
    },

    async recordUse (row, use) {
      const updated = await db.update(passkey).set({ counter: use.counter, backed_up: use.backedUp, last_used_at: now() })
        .where(and(eq(passkey.passkey_id, row.passkey_id), eq(passkey.counter, row.counter)))
        .returning({ id: passkey.passkey_id })
      return updated.length > 0
    },

    async registrationOptions (caller) {
      const found = await account(caller)
      await assertFreshStrongLogin(caller)
      const existing = await listForUser(found.user_id)
      const challenge = await issueChallenge(store, { purpose: 'register', userId: found.user_id }, ttl)
      const userName = found.email ?? found.phone_number ?? found.user_name ?? found.user_id
      return generateRegistrationOptions({
        rpName: rp.name,
        rpID: rp.id,
        userName,
        userID: new Uint8Array(userHandleOf(found.user_id)),
        userDisplayName: [found.first_name, found.last_name].filter(Boolean).join(' ') || userName,
        challenge: challengeBytes(challenge),
        timeout: ttl * 1000,
        attestationType: 'none',
        excludeCredentials: existing.map((row) => ({ id: row.credential_id, transports: row.transports })),
        // Discoverable, so the usernameless sign-in finds it; verified, so it stands for two factors.
        authenticatorSelection: { residentKey: 'required', requireResidentKey: true, userVerification: 'required' }
      })
    },

    async register (caller, credential, name) {
      const found = await account(caller)
      const challenge = signedChallenge(credential.response.clientDataJSON)
      const claims = await takeChallenge(store, challenge, 'register')
      if (!challenge || !claims || claims.userId !== found.user_id) throw new AppError('PASSKEY_CHALLENGE_INVALID')
      // Checked again: the options may be up to a TTL old.
      await assertFreshStrongLogin(caller)
      let verified
      try {
        verified = await verifyRegistrationResponse({
          response: credential,
          expectedChallenge: challenge,
          expectedOrigin: rp.origins,
          expectedRPID: rp.id,
          requireUserVerification: true
        })
      } catch (error) {
        await fastify.audit(caller, { action: 'passkey_registration_failed', module: 'passkeys', level: 'warning', targetUserId: found.user_id, metadata: { reason: (error as Error).message.slice(0, 200) } })
        throw new AppError('PASSKEY_REGISTRATION_FAILED')
      }
      if (!verified.verified) throw new AppError('PASSKEY_REGISTRATION_FAILED')
      const info = verified.registrationInfo
      let row: Passkey
      try {
        [row] = await db.insert(passkey).values({
          user_id: found.user_id,
          credential_id: info.credential.id,
          public_key: isoBase64URL.fromBuffer(info.credential.publicKey),
          counter: info.credential.counter,
          user_handle: isoBase64URL.fromBuffer(userHandleOf(found.user_id)),
          name: name?.trim() || defaultName(info.credentialDeviceType === 'multiDevice', fastify.now()),
          transports: (credential.response.transports ?? []).slice(0, 10),
          device_type: info.credentialDeviceType === 'multiDevice' ? 'multi_device' : 'single_device',
          backup_eligible: info.credentialDeviceType === 'multiDevice',
          backed_up: info.credentialBackedUp,
          aaguid: info.aaguid,
          created_at: now()
        }).returning()
      } catch (error) {
        if (isUniqueViolation(error)) throw new AppError('PASSKEY_ALREADY_REGISTERED', { cause: error })
        throw error
      }
      await fastify.audit(caller, { action: 'passkey_registered', module: 'passkeys', targetUserId: found.user_id, metadata: { passkey_id: row.passkey_id, device_type: row.device_type, backed_up: row.backed_up, aaguid: row.aaguid } })
      fastify.notify.notice({ account: found, template: 'passkey_added', params: { name: row.name } })
      return passkeyView(row)
    },

    async list (caller) {
      return (await listForUser(signedIn(caller).userId)).map(passkeyView)
    },

    async rename (caller, passkeyId, name) {
      const row = await owned(caller, passkeyId)
      const [updated] = await db.update(passkey).set({ name: name.trim() || row.name }).where(eq(passkey.passkey_id, row.passkey_id)).returning()
      if (!updated) throw new AppError('PASSKEY_NOT_FOUND')
      await fastify.audit(caller, { action: 'passkey_renamed', module: 'passkeys', targetUserId: row.user_id, metadata: { passkey_id: row.passkey_id } })
      return passkeyView(updated)
    },

    async remove (caller, passkeyId) {
      const row = await owned(caller, passkeyId)
      await assertFreshStrongLogin(caller)
      const removed = await db.delete(passkey).where(eq(passkey.passkey_id, row.passkey_id)).returning({ id: passkey.passkey_id })
      if (removed.length === 0) throw new AppError('PASSKEY_NOT_FOUND')
      const found = await account(caller)
      await fastify.audit(caller, { action: 'passkey_removed', module: 'passkeys', level: 'warning', targetUserId: row.user_id, metadata: { passkey_id: row.passkey_id, name: row.name } })
      fastify.notify.notice({ account: found, template: 'passkey_removed', params: { name: row.name } })
    }
  }
  fastify.decorate('passkeys', service)
}, { name: 'passkeys', dependencies: ['db', 'store', 'users', 'accounts', 'mfa', 'activity', 'notify'] })

/** The name of a passkey registered without one: its kind and the day, e.g. "Synced passkey (2026-12-08)". */
function defaultName (synced: boolean, at: number) {
  return `${synced ? 'Synced passkey' : 'Passkey'} (${new Date(at).toISOString().slice(0, 10)})`
}
