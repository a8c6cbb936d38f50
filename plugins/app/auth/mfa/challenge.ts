import fp from 'fastify-plugin'
import { AppError } from '../../../../schemas/errors.ts'
import type { Caller } from '../caller.ts'
import { needsSecondFactor } from '../login.ts'
import type { TokenBundle } from '../tokens.ts'
import { readTicket, spendTicket, ticketFailed } from './tickets.ts'

/**
 * The second step of a login (`P/auth/mfa/challenge`): the MFA ticket and a TOTP
 * code (six digits) or a recovery code. Every attempt counts towards the account's
 * lockout like a password attempt (SR-9: the same counters, reserved before the
 * check); a right code clears them and opens an aal2 session through
 * `login.complete`. A TOTP code is accepted once per time step (replay refused), a
 * recovery code once; the ticket is spent by the first success and dies after its
 * fifth wrong code.
 */
export interface MfaChallengeService {
  complete: (caller: Caller, ticket: string, code: string) => Promise<TokenBundle>
}

declare module 'fastify' {
  interface FastifyInstance { mfaChallenge: MfaChallengeService }
}

export default fp(async (fastify) => {
  const { login, mfa, store, throttle, users } = fastify

  async function complete (caller: Caller, ticket: string, code: string) {
    const claims = await readTicket(store, ticket)
    if (!claims) throw new AppError('MFA_TICKET_INVALID')
    const lockout = `user:${claims.userId}`
    const { lockedForSeconds } = await throttle.reserveAttempt(lockout)
    const trimmed = code.trim()
    const totp = /^\d{6}$/.test(trimmed)
    const remaining = totp ? (await mfa.checkTotp(claims.userId, trimmed) ? 0 : -1) : await mfa.spendRecoveryCode(claims.userId, trimmed)
    if (remaining < 0) {
      await ticketFailed(store, ticket)
      await fastify.audit(caller, { action: 'mfa_challenge_failed', module: 'mfa', level: 'warning', userId: null, targetUserId: claims.userId, metadata: { factor: totp ? 'totp' : 'recovery_code' } })
      if (lockedForSeconds > 0) {
        await fastify.audit(caller, { action: 'account_locked', level: 'warning', userId: null, targetUserId: claims.userId, metadata: { seconds: lockedForSeconds, reason: 'mfa' } })
      }
      throw new AppError('MFA_INVALID_CODE')
    }
    if (!(await spendTicket(store, ticket))) throw new AppError('MFA_TICKET_INVALID')
    const account = await users.findById(claims.userId)
    if (!account) throw new AppError('MFA_TICKET_INVALID')
    const outcome = await login.complete(caller, account, {
      method: claims.method,
      lockout,
      deviceName: claims.deviceName,
      metadata: { second_factor: totp ? 'totp' : 'recovery_code' },
      assurance: { amr: [...claims.amr, totp ? 'totp' : 'recovery'], aal: 2 }
    })
    // aal 2 always opens the session.
    if (needsSecondFactor(outcome)) throw new AppError('INTERNAL_ERROR')
    if (!totp) {
      await fastify.audit(caller, { action: 'mfa_recovery_code_used', module: 'mfa', level: 'warning', targetUserId: account.user_id, sessionId: outcome.session_id, metadata: { remaining } })
      fastify.notify.notice({ account, template: 'mfa_recovery_code_used', params: { remaining } })
    }
    return outcome
  }

  fastify.decorate('mfaChallenge', { complete })
}, { name: 'mfa-challenge', dependencies: ['mfa', 'login', 'store', 'throttle', 'users', 'activity', 'notify'] })
