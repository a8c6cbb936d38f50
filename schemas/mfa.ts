import { Type } from '@sinclair/typebox'
import { Nullable, StrictObject } from './envelope.ts'
import { ref } from './ref.ts'

/** Multi-factor authentication (issue 19): TOTP factors, recovery codes, the MFA ticket of a login. */

const FactorId = Type.String({ format: 'uuid' })
const Code = Type.String({ minLength: 6, maxLength: 32, description: 'The 6-digit code of the authenticator app, or (challenge only) a recovery code' })

export const MfaRequiredSchema = Type.Object({
  mfa_required: Type.Literal(true),
  mfa_ticket: Type.String({ description: 'Single use, short-lived: send it to P/auth/mfa/challenge with a code' }),
  expires_in: Type.Integer({ description: 'Seconds the ticket stays valid' }),
  factors: Type.Array(Type.Union([Type.Literal('totp'), Type.Literal('recovery_code')]), { description: 'What the challenge accepts' })
}, { $id: 'MfaRequired', description: 'The answer of a login when the account has a second factor: no tokens until the challenge' })

export const MfaFactorSchema = Type.Object({
  factor_id: FactorId,
  type: Type.Literal('totp'),
  status: Type.Union([Type.Literal('pending'), Type.Literal('verified')], { description: 'pending: enrolment started, not confirmed with a code yet' }),
  created_at: Type.String({ format: 'date-time' }),
  verified_at: Nullable(Type.String({ format: 'date-time' })),
  last_used_at: Nullable(Type.String({ format: 'date-time' }))
}, { $id: 'MfaFactor' })

export const MfaFactorListSchema = Type.Object({
  factors: Type.Array(ref(MfaFactorSchema)),
  recovery_codes_remaining: Type.Integer({ description: 'Unused recovery codes' })
}, { $id: 'MfaFactorList' })

export const TotpEnrolmentSchema = Type.Object({
  factor_id: FactorId,
  secret: Type.String({ description: 'Base32 secret, for manual entry; never shown again once confirmed' }),
  otpauth_uri: Type.String({ description: 'otpauth://totp/... URI (RFC 6238, SHA-1, 6 digits, 30 s)' }),
  qr_code: Type.String({ description: 'The URI as a QR code, a PNG data URL (data:image/png;base64,...)' })
}, { $id: 'TotpEnrolment' })

export const RecoveryCodesSchema = Type.Object({
  recovery_codes: Type.Array(Type.String(), { description: 'Ten single-use codes, shown this once: store them safely' })
}, { $id: 'RecoveryCodes' })

export const TotpConfirmationSchema = Type.Object({
  factor: ref(MfaFactorSchema),
  recovery_codes: Type.Array(Type.String(), { description: 'Ten single-use codes, shown this once: store them safely' })
}, { $id: 'TotpConfirmation' })

export const TotpVerifyBody = StrictObject({
  factor_id: FactorId,
  code: Type.String({ pattern: '^\\d{6}$', description: 'The current 6-digit code of the authenticator app' })
}, { $id: 'TotpVerifyRequest' })

export const MfaChallengeBody = StrictObject({
  mfa_ticket: Type.String({ minLength: 10, maxLength: 128 }),
  code: Code
}, { $id: 'MfaChallengeRequest' })

export const mfaSchemas = [MfaRequiredSchema, MfaFactorSchema, MfaFactorListSchema, TotpEnrolmentSchema, RecoveryCodesSchema, TotpConfirmationSchema, TotpVerifyBody, MfaChallengeBody]
