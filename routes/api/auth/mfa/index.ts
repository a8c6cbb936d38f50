import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { Envelope } from '../../../../schemas/envelope.ts'
import { TokenBundleSchema } from '../../../../schemas/auth.ts'
import { MfaChallengeBody, MfaFactorListSchema, RecoveryCodesSchema, TotpConfirmationSchema, TotpEnrolmentSchema, TotpVerifyBody } from '../../../../schemas/mfa.ts'
import { ref } from '../../../../schemas/ref.ts'

/** `P/auth/mfa`: second factors (TOTP, recovery codes) and the second step of a login (issue 19). */
const tags = ['mfa']

const mfa: FastifyPluginAsyncTypebox = async (fastify) => {
  const perIp = { max: fastify.config.AUTH_RATE_LIMIT_PER_IP, timeWindow: 60_000 }

  fastify.get('/', {
    config: { permissions: [], allowWithoutMfa: true },
    schema: { operationId: 'listMfaFactors', tags, summary: 'Your second factors and how many recovery codes are left', response: { 200: Envelope(ref(MfaFactorListSchema)) } }
  }, async (request, reply) => reply.ok(await fastify.mfa.list(request.caller)))

  fastify.post('/totp', {
    config: { audited: true, permissions: [], allowWithoutMfa: true, rateLimit: perIp },
    schema: {
      operationId: 'startTotpEnrolment',
      tags,
      summary: 'Start enrolling an authenticator app (TOTP): secret, otpauth:// URI and QR code',
      description: 'Creates a pending factor (replacing a pending one); confirm it with P/auth/mfa/totp/verify. 409 MFA_ALREADY_ENROLLED when one is verified.',
      response: { 200: Envelope(ref(TotpEnrolmentSchema)) }
    }
  }, async (request, reply) => reply.ok(await fastify.mfa.startTotp(request.caller), { message: 'success.mfa_enrolment_started' }))

  fastify.post('/totp/verify', {
    config: { audited: true, permissions: [], allowWithoutMfa: true, rateLimit: perIp },
    schema: {
      operationId: 'confirmTotpEnrolment',
      tags,
      summary: 'Confirm the authenticator app with its first code; answers ten recovery codes, shown once',
      body: ref(TotpVerifyBody),
      response: { 200: Envelope(ref(TotpConfirmationSchema)) }
    }
  }, async (request, reply) => {
    const { factor_id: factorId, code } = request.body as typeof TotpVerifyBody.static
    return reply.ok(await fastify.mfa.confirmTotp(request.caller, factorId, code), { message: 'success.mfa_enrolled' })
  })

  fastify.post('/challenge', {
    config: { audited: true, public: true, rateLimit: perIp },
    schema: {
      operationId: 'completeMfaChallenge',
      tags,
      summary: 'Second step of a login: the MFA ticket and a TOTP or recovery code; answers the tokens (aal2)',
      description: 'Wrong codes count towards the account\'s lockout like wrong passwords (429 with Retry-After); a ticket works once and for five minutes.',
      body: ref(MfaChallengeBody),
      response: { 200: Envelope(ref(TokenBundleSchema)) }
    }
  }, async (request, reply) => {
    const { mfa_ticket: ticket, code } = request.body as typeof MfaChallengeBody.static
    return reply.ok(await fastify.mfaChallenge.complete(request.caller, ticket, code), { message: 'success.login' })
  })

  fastify.post('/recovery-codes', {
    config: { audited: true, permissions: [], rateLimit: perIp },
    schema: {
      operationId: 'regenerateRecoveryCodes',
      tags,
      summary: 'Replace your recovery codes (fresh login with the second factor required)',
      description: '403 AUTH_REAUTH_REQUIRED without a recent login, 403 MFA_STEP_UP_REQUIRED when the session is not aal2.',
      response: { 200: Envelope(ref(RecoveryCodesSchema)) }
    }
  }, async (request, reply) => {
    const codes = await fastify.mfa.regenerateRecoveryCodes(request.caller)
    return reply.ok({ recovery_codes: codes }, { message: 'success.mfa_recovery_codes_regenerated' })
  })

  fastify.delete('/:factor_id', {
    config: { audited: true, permissions: [] },
    schema: {
      operationId: 'removeMfaFactor',
      tags,
      summary: 'Remove one of your factors (a verified one: fresh login with the second factor required)',
      params: Type.Object({ factor_id: Type.String({ format: 'uuid' }) }),
      response: { 200: Envelope(Type.Object({ factor_id: Type.String({ format: 'uuid' }), removed: Type.Literal(true) })) }
    }
  }, async (request, reply) => {
    await fastify.mfa.remove(request.caller, request.params.factor_id)
    return reply.ok({ factor_id: request.params.factor_id, removed: true as const }, { message: 'success.mfa_factor_removed' })
  })
}

export default mfa
