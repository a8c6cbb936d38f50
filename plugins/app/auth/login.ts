import fp from 'fastify-plugin'
import type { User } from '../../../db/schema/index.ts'
import { AppError } from '../../../schemas/errors.ts'
import { normalizeIdentifier } from '../accounts/contact.ts'
import type { Caller } from './caller.ts'
import type { ClientContext } from './sessions.ts'
import { defaultAssurance } from './sessions.ts'
import type { Assurance, TokenBundle } from './tokens.ts'
import { keyOf } from './throttle.ts'
import { issueTicket, type MfaRequired } from './mfa/tickets.ts'

/**
 * Logging in. `withPassword` is shared by `P/auth/login-with-password` and the OAuth2
 * `P/token`; `complete` is what every login does once the credential is proven
 * (password here, one-time password in credentials.ts).
 *
 * Unknown identifier and wrong password take the same path: same status, code and
 * message, and a real Argon2 verification against a dummy hash (SR-7). Attempts
 * count per account before the hash and lock it with a growing back-off (SR-9);
 * the canonical identifier has its own rate limit (SR-10).
 */
export type LoginMethod = ClientContext['method']

export interface LoginCompletion {
  method: LoginMethod
  /** Extra metadata of the login_success audit row (`method` is always there). */
  metadata?: Record<string, unknown>
  /** The account's lockout key, cleared first: the credential was right, whatever follows (SR-9). */
  lockout?: string
  /** Runs once the account is known to be active, before the session opens (a rehash, a proven address). */
  beforeSession?: () => Promise<unknown>
  /**
   * The session's amr/aal claims, `{ amr: string[], aal: 1 | 2 }`; by default the
   * method's own at aal 1. A login at aal 1 of an account with a second factor
   * answers an MFA ticket (mfa/tickets.ts) instead of tokens; aal 2 (the MFA
   * challenge, a passkey) opens the session.
   */
  assurance?: Assurance
  /** The `device_name` the client gave (carried through an MFA ticket); names the session. */
  deviceName?: string
}

/** A login's answer: the session's tokens, or the MFA ticket to complete it with. */
export type LoginOutcome = TokenBundle | MfaRequired

export const needsSecondFactor = (outcome: LoginOutcome): outcome is MfaRequired => 'mfa_required' in outcome

export interface LoginService {
  withPassword: (caller: Caller, identifier: string, password: string, method: LoginMethod, options?: { deviceName?: string }) => Promise<LoginOutcome>
  /**
   * The steps after a proven credential: lifts the lockout, refuses an inactive
   * account (audited), records the login, opens the session, audits it and sends
   * the new-device notice in the background. An account with a second factor gets
   * an MFA ticket instead unless `steps.assurance.aal` is 2.
   */
  complete: (caller: Caller, account: User, steps: LoginCompletion) => Promise<LoginOutcome>
  /** Enforces the password length rules before any work (SR-1). */
  assertPasswordLength: (password: string) => void
}

declare module 'fastify' {
  interface FastifyInstance { login: LoginService }
}

export default fp(async (fastify) => {
  const { config, throttle, users, passwords, sessions, store } = fastify

  function assertPasswordLength (password: string) {
    const length = [...password].length
    if (length > config.PASSWORD_MAX_LENGTH) throw new AppError('PASSWORD_TOO_LONG', { params: { max: config.PASSWORD_MAX_LENGTH } })
  }

  async function complete (caller: Caller, account: User, steps: LoginCompletion) {
    const { method } = steps
    if (steps.lockout !== undefined) await throttle.clearFailures(steps.lockout)
    if (!account.is_active || account.status !== 'active') {
      await fastify.audit(caller, { action: 'login_failed', level: 'warning', userId: null, targetUserId: account.user_id, metadata: { method, reason: 'inactive' } })
      throw new AppError('AUTH_ACCOUNT_INACTIVE')
    }
    await steps.beforeSession?.()
    const assurance = steps.assurance ?? defaultAssurance(method)
    if (assurance.aal < 2 && await fastify.mfa.hasFactor(account.user_id)) {
      await fastify.audit(caller, { action: 'mfa_challenge_issued', module: 'mfa', userId: null, targetUserId: account.user_id, metadata: { method } })
      return issueTicket(store, { userId: account.user_id, method, amr: assurance.amr, ...(steps.deviceName !== undefined ? { deviceName: steps.deviceName } : {}) })
    }
    const current = await users.recordLogin(account.user_id)
    const bundle = await sessions.create(current, { ip: caller.ip, userAgent: caller.userAgent, method, assurance, deviceName: steps.deviceName })
    await fastify.audit(caller, { action: 'login_success', userId: current.user_id, targetUserId: current.user_id, sessionId: bundle.session_id, metadata: { method, amr: assurance.amr, aal: assurance.aal, ...steps.metadata } })
    // Background and failure-proof: a notice never delays or fails the login.
    fastify.notify.loginNotice(caller, current, bundle.session_id)
    return bundle
  }

  async function withPassword (caller: Caller, identifier: string, password: string, method: LoginMethod, options: { deviceName?: string } = {}) {
    assertPasswordLength(password)
    // Every spelling of one address shares its buckets: E.164 for phones, lower case for the rest (SR-10).
    const canonical = (normalizeIdentifier(identifier)?.value ?? identifier.trim()).toLowerCase()
    const identifierHash = keyOf(canonical)
    await throttle.limit('login-id', canonical, config.AUTH_RATE_LIMIT_PER_IDENTIFIER, 60_000)
    const found = await users.findByIdentifier(identifier)
    // Locks key on the account when it exists, else on the identifier: both behave alike.
    const account = found ? `user:${found.user_id}` : `id:${canonical}`
    // Counted before the hash, so a parallel burst is refused past the threshold (SR-9).
    const { lockedForSeconds } = await throttle.reserveAttempt(account)
    const { ok, needsRehash } = await passwords.verify(found?.password ?? null, password)
    if (!found || !ok) {
      await fastify.audit(caller, { action: 'login_failed', level: 'warning', userId: null, targetUserId: found?.user_id ?? null, metadata: { method, identifier_hash: identifierHash } })
      if (lockedForSeconds > 0) {
        await fastify.audit(caller, { action: 'account_locked', level: 'warning', userId: null, targetUserId: found?.user_id ?? null, metadata: { seconds: lockedForSeconds, identifier_hash: identifierHash } })
      }
      throw new AppError('AUTH_INVALID_CREDENTIALS')
    }
    return complete(caller, found, {
      method,
      lockout: account,
      deviceName: options.deviceName,
      metadata: { rehashed: needsRehash },
      beforeSession: needsRehash ? async () => users.setPasswordHash(found.user_id, await passwords.hash(password)) : undefined
    })
  }

  fastify.decorate('login', { withPassword, complete, assertPasswordLength })
}, { name: 'login', dependencies: ['throttle', 'users', 'passwords', 'sessions', 'activity', 'notify', 'mfa', 'store'] })
