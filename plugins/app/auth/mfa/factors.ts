import fp from 'fastify-plugin'
import { and, count, eq, isNull, lt, or } from 'drizzle-orm'
import { generateSecret, generateURI, verify } from 'otplib'
import QRCode from 'qrcode'
import { mfaFactor, mfaRecoveryCode, type MfaFactor } from '../../../../db/schema/index.ts'
import { AppError } from '../../../../schemas/errors.ts'
import { signedIn, type Caller } from '../caller.ts'
import { decryptSecret, deriveKeys, encryptSecret, newRecoveryCode, recoveryDigest } from './secrets.ts'

/**
 * Second factors (issue 19): TOTP (RFC 6238, 30 s steps, 6 digits, ±1 step of drift)
 * and ten single-use recovery codes. The module owns the `mfa_factor` and
 * `mfa_recovery_code` tables. An account "has MFA" once a TOTP factor is verified;
 * then sensitive changes need an aal2 session (`assertStepUp`) and logins end with
 * an MFA ticket (challenge.ts) instead of tokens.
 */
export interface FactorView {
  factor_id: string
  type: 'totp'
  status: 'pending' | 'verified'
  created_at: string
  verified_at: string | null
  last_used_at: string | null
}

export interface TotpEnrolment { factor_id: string, secret: string, otpauth_uri: string, qr_code: string }

export interface MfaService {
  /** Whether the account has a verified factor. */
  hasFactor: (userId: string) => Promise<boolean>
  /** Starts (or restarts) TOTP enrolment: a pending factor, its secret, URI and QR code. */
  startTotp: (caller: Caller) => Promise<TotpEnrolment>
  /** Confirms a pending factor with its first code; answers the recovery codes, shown this once. */
  confirmTotp: (caller: Caller, factorId: string, code: string) => Promise<{ factor: FactorView, recovery_codes: string[] }>
  list: (caller: Caller) => Promise<{ factors: FactorView[], recovery_codes_remaining: number }>
  /** Removes one of the caller's factors (fresh login and aal2 when verified). */
  remove: (caller: Caller, factorId: string) => Promise<void>
  /** Replaces the recovery codes (fresh login and aal2). */
  regenerateRecoveryCodes: (caller: Caller) => Promise<string[]>
  /**
   * An administrator removes every factor and recovery code of an account (identity
   * proven out of band); only super admins reset a super admin. Returns how many factors.
   */
  resetForUser: (caller: Caller, userId: string) => Promise<number>
  /** MFA_STEP_UP_REQUIRED unless the caller's session is aal2 or the account has no factor. */
  assertStepUp: (caller: Caller) => Promise<void>
  /** Checks a TOTP code against the verified factor, refusing a replayed step. True when accepted. */
  checkTotp: (userId: string, code: string) => Promise<boolean>
  /** Spends a recovery code; answers the unused ones left, or -1 when it is not a valid unused code. */
  spendRecoveryCode: (userId: string, code: string) => Promise<number>
}

declare module 'fastify' {
  interface FastifyInstance { mfa: MfaService }
}

const RECOVERY_CODE_COUNT = 10
const PERIOD_SECONDS = 30

const iso = (d: Date | null) => (d ? d.toISOString() : null)
const view = (row: MfaFactor): FactorView => ({
  factor_id: row.factor_id,
  type: row.type,
  status: row.status,
  created_at: row.created_at.toISOString(),
  verified_at: iso(row.verified_at),
  last_used_at: iso(row.last_used_at)
})

export default fp(async (fastify) => {
  const { config, db, users } = fastify
  const keys = deriveKeys(config.JWT_SECRET_KEY!)
  const now = () => new Date(fastify.now())

  async function verifiedFactor (userId: string) {
    const [row] = await db.select().from(mfaFactor).where(and(eq(mfaFactor.user_id, userId), eq(mfaFactor.status, 'verified'))).limit(1)
    return row
  }

  async function hasFactor (userId: string) {
    return (await verifiedFactor(userId)) !== undefined
  }

  /** The time step `code` belongs to for this factor (±1 step of drift), or undefined. */
  async function matchingStep (row: MfaFactor, code: string): Promise<number | undefined> {
    if (!/^\d{6}$/.test(code)) return undefined
    const secret = decryptSecret(keys, row.user_id, row.secret)
    const epoch = Math.floor(fastify.now() / 1000)
    const result = await verify({ secret, token: code, epoch, period: PERIOD_SECONDS, epochTolerance: PERIOD_SECONDS })
    return result.valid ? Math.floor(epoch / PERIOD_SECONDS) + result.delta : undefined
  }

  /** Records `step` as used unless it (or a later one) already was: the one atomic replay guard. */
  async function consumeStep (factorId: string, step: number) {
    const rows = await db.update(mfaFactor).set({ last_used_step: step, last_used_at: now() })
      .where(and(eq(mfaFactor.factor_id, factorId), or(isNull(mfaFactor.last_used_step), lt(mfaFactor.last_used_step, step))))
      .returning({ id: mfaFactor.factor_id })
    return rows.length > 0
  }

  async function checkTotp (userId: string, code: string) {
    const row = await verifiedFactor(userId)
    if (!row) return false
    const step = await matchingStep(row, code)
    return step !== undefined && consumeStep(row.factor_id, step)
  }

  async function newRecoveryCodes (userId: string) {
    const codes = Array.from({ length: RECOVERY_CODE_COUNT }, newRecoveryCode)
    await db.transaction(async (tx) => {
      await tx.delete(mfaRecoveryCode).where(eq(mfaRecoveryCode.user_id, userId))
      await tx.insert(mfaRecoveryCode).values(codes.map((code) => ({ user_id: userId, code_hash: recoveryDigest(keys, userId, code), created_at: now() })))
    })
    return codes
  }

  async function unusedCodes (userId: string) {
    const [row] = await db.select({ n: count() }).from(mfaRecoveryCode).where(and(eq(mfaRecoveryCode.user_id, userId), isNull(mfaRecoveryCode.used_at)))
    return row?.n ?? 0
  }

  async function spendRecoveryCode (userId: string, code: string) {
    if (code.length > 64) return -1
    const spent = await db.update(mfaRecoveryCode).set({ used_at: now() })
      .where(and(eq(mfaRecoveryCode.user_id, userId), eq(mfaRecoveryCode.code_hash, recoveryDigest(keys, userId, code)), isNull(mfaRecoveryCode.used_at)))
      .returning({ id: mfaRecoveryCode.code_id })
    return spent.length > 0 ? unusedCodes(userId) : -1
  }

  async function account (caller: Caller) {
    const auth = signedIn(caller)
    const found = await users.findById(auth.userId)
    if (!found) throw new AppError('AUTH_SESSION_REVOKED')
    return found
  }

  async function assertStepUp (caller: Caller) {
    const auth = signedIn(caller)
    if (auth.aal < 2 && await hasFactor(auth.userId)) throw new AppError('MFA_STEP_UP_REQUIRED')
  }

  /** The factors changed: the cached state (require_mfa enforcement) follows on the next request. */
  const factorsChanged = (userId: string) => fastify.authState.refresh(userId)

  const service: MfaService = {
    hasFactor,
    checkTotp,
    spendRecoveryCode,
    assertStepUp,

    async startTotp (caller) {
      const found = await account(caller)
      if (await hasFactor(found.user_id)) throw new AppError('MFA_ALREADY_ENROLLED')
      const secret = generateSecret()
      const label = found.email ?? found.phone_number ?? found.user_name ?? found.user_id
      const uri = generateURI({ issuer: config.APP_NAME, label, secret, period: PERIOD_SECONDS })
      // One enrolment at a time: a restarted one replaces the pending factor.
      const [row] = await db.transaction(async (tx) => {
        await tx.delete(mfaFactor).where(and(eq(mfaFactor.user_id, found.user_id), eq(mfaFactor.status, 'pending')))
        return tx.insert(mfaFactor).values({ user_id: found.user_id, type: 'totp', status: 'pending', secret: encryptSecret(keys, found.user_id, secret), created_at: now() }).returning()
      })
      await fastify.audit(caller, { action: 'mfa_enrolment_started', module: 'mfa', targetUserId: found.user_id, metadata: { factor_id: row.factor_id, type: 'totp' } })
      return { factor_id: row.factor_id, secret, otpauth_uri: uri, qr_code: await QRCode.toDataURL(uri, { errorCorrectionLevel: 'M', margin: 2 }) }
    },

    async confirmTotp (caller, factorId, code) {
      const found = await account(caller)
      const [row] = await db.select().from(mfaFactor)
        .where(and(eq(mfaFactor.factor_id, factorId), eq(mfaFactor.user_id, found.user_id), eq(mfaFactor.status, 'pending')))
      if (!row) throw new AppError('MFA_FACTOR_NOT_FOUND')
      await fastify.throttle.limit('mfa-verify', found.user_id, config.AUTH_RATE_LIMIT_PER_IDENTIFIER, 60_000)
      const step = await matchingStep(row, code)
      if (step === undefined) {
        await fastify.audit(caller, { action: 'mfa_enrolment_failed', module: 'mfa', level: 'warning', targetUserId: found.user_id, metadata: { factor_id: factorId } })
        throw new AppError('MFA_INVALID_CODE')
      }
      const [verified] = await db.update(mfaFactor).set({ status: 'verified', verified_at: now(), last_used_step: step, last_used_at: now() })
        .where(and(eq(mfaFactor.factor_id, factorId), eq(mfaFactor.status, 'pending'))).returning()
      if (!verified) throw new AppError('MFA_FACTOR_NOT_FOUND')
      const codes = await newRecoveryCodes(found.user_id)
      await factorsChanged(found.user_id)
      await fastify.audit(caller, { action: 'mfa_enrolled', module: 'mfa', targetUserId: found.user_id, metadata: { factor_id: factorId, type: 'totp' } })
      fastify.notify.notice({ account: found, template: 'mfa_enabled' })
      return { factor: view(verified), recovery_codes: codes }
    },

    async list (caller) {
      const auth = signedIn(caller)
      const rows = await db.select().from(mfaFactor).where(eq(mfaFactor.user_id, auth.userId)).orderBy(mfaFactor.created_at)
      return { factors: rows.map(view), recovery_codes_remaining: await unusedCodes(auth.userId) }
    },

    async remove (caller, factorId) {
      const found = await account(caller)
      const [row] = await db.select().from(mfaFactor).where(and(eq(mfaFactor.factor_id, factorId), eq(mfaFactor.user_id, found.user_id)))
      if (!row) throw new AppError('MFA_FACTOR_NOT_FOUND')
      if (row.status === 'verified') {
        // SR-23 and issue 19: a fresh login, made with the second factor.
        await fastify.accounts.assertRecentAuth(caller)
        await assertStepUp(caller)
      }
      await db.transaction(async (tx) => {
        await tx.delete(mfaFactor).where(eq(mfaFactor.factor_id, factorId))
        const [left] = await tx.select({ n: count() }).from(mfaFactor).where(and(eq(mfaFactor.user_id, found.user_id), eq(mfaFactor.status, 'verified')))
        if ((left?.n ?? 0) === 0) await tx.delete(mfaRecoveryCode).where(eq(mfaRecoveryCode.user_id, found.user_id))
      })
      await factorsChanged(found.user_id)
      await fastify.audit(caller, { action: 'mfa_factor_removed', module: 'mfa', level: 'warning', targetUserId: found.user_id, metadata: { factor_id: factorId, status: row.status } })
      if (row.status === 'verified') fastify.notify.notice({ account: found, template: 'mfa_removed' })
    },

    async regenerateRecoveryCodes (caller) {
      const found = await account(caller)
      if (!(await hasFactor(found.user_id))) throw new AppError('MFA_FACTOR_NOT_FOUND')
      await fastify.accounts.assertRecentAuth(caller)
      await assertStepUp(caller)
      const codes = await newRecoveryCodes(found.user_id)
      await fastify.audit(caller, { action: 'mfa_recovery_codes_regenerated', module: 'mfa', targetUserId: found.user_id })
      return codes
    },

    async resetForUser (caller, userId) {
      const actor = signedIn(caller)
      const target = await users.findById(userId)
      if (!target || target.status === 'deleted') throw new AppError('USER_NOT_FOUND')
      if (!actor.superAdmin && (await fastify.authState.current(userId)).superAdmin) {
        throw new AppError('PRIVILEGE_ESCALATION', { details: { reason: 'only super admins reset the factors of a super admin' } })
      }
      const removed = await db.transaction(async (tx) => {
        const rows = await tx.delete(mfaFactor).where(eq(mfaFactor.user_id, target.user_id)).returning({ id: mfaFactor.factor_id })
        await tx.delete(mfaRecoveryCode).where(eq(mfaRecoveryCode.user_id, target.user_id))
        return rows.length
      })
      await factorsChanged(target.user_id)
      await fastify.audit(caller, { action: 'mfa_reset', module: 'mfa', level: 'warning', targetUserId: target.user_id, metadata: { removed_factors: removed } })
      if (removed > 0) fastify.notify.notice({ account: target, template: 'mfa_removed' })
      return removed
    }
  }
  fastify.decorate('mfa', service)
}, { name: 'mfa', dependencies: ['db', 'users', 'auth-state', 'throttle', 'accounts', 'activity', 'notify'] })
