import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import type { AuthenticationResponseJSON, RegistrationResponseJSON } from '@simplewebauthn/server'
import { Envelope } from '../../../../schemas/envelope.ts'
import { TokenBundleSchema } from '../../../../schemas/auth.ts'
import { PasskeyCreationOptionsSchema, PasskeyListSchema, PasskeyLoginBody, PasskeyLoginOptionsBody, PasskeyRegistrationBody, PasskeyRenameBody, PasskeyRequestOptionsSchema, PasskeySchema } from '../../../../schemas/passkeys.ts'
import { bodyOptional } from '../../../../plugins/app/http/envelope.ts'
import { ref } from '../../../../schemas/ref.ts'

/** `P/auth/passkeys`: WebAuthn passkeys, registration and passwordless sign-in (issue 20). */
const tags = ['passkeys']
const PasskeyId = Type.Object({ passkey_id: Type.String({ format: 'uuid' }) })

const passkeys: FastifyPluginAsyncTypebox = async (fastify) => {
  const perIp = { max: fastify.config.AUTH_RATE_LIMIT_PER_IP, timeWindow: 60_000 }

  fastify.post('/register/options', {
    config: { permissions: [], rateLimit: perIp },
    schema: {
      operationId: 'startPasskeyRegistration',
      tags,
      summary: 'Start adding a passkey: the options for navigator.credentials.create()',
      description: 'Needs a fresh login (REAUTH_WINDOW_MINUTES), made with the second factor when the account has one (403 AUTH_REAUTH_REQUIRED, MFA_STEP_UP_REQUIRED). ' +
        'The challenge works once, for this account, for WEBAUTHN_CHALLENGE_TTL_SECONDS. Passkeys are discoverable and need user verification.',
      response: { 200: Envelope(ref(PasskeyCreationOptionsSchema)) }
    }
  }, async (request, reply) => reply.ok(await fastify.passkeys.registrationOptions(request.caller), { message: 'success.passkey_options' }))

  fastify.post('/register/verify', {
    config: { permissions: [], rateLimit: perIp },
    schema: {
      operationId: 'completePasskeyRegistration',
      tags,
      summary: 'Finish adding a passkey: the new credential from navigator.credentials.create()',
      description: '400 PASSKEY_CHALLENGE_INVALID when the challenge is unknown, expired, used or another account\'s; 400 PASSKEY_REGISTRATION_FAILED when the origin, ' +
        'relying party, user verification or signature do not check out; 409 PASSKEY_ALREADY_REGISTERED.',
      body: ref(PasskeyRegistrationBody),
      response: { 200: Envelope(ref(PasskeySchema)) }
    }
  }, async (request, reply) => {
    const { credential, name } = request.body as typeof PasskeyRegistrationBody.static
    const created = await fastify.passkeys.register(request.caller, credential as RegistrationResponseJSON, name)
    return reply.ok(created, { message: 'success.passkey_registered' })
  })

  fastify.post('/login/options', {
    config: { public: true, rateLimit: perIp },
    preValidation: bodyOptional,
    schema: {
      operationId: 'startPasskeyLogin',
      tags,
      summary: 'Start a passkey sign-in: the options for navigator.credentials.get()',
      description: 'With an identifier: that account\'s passkeys (an unknown identifier gets the same shape). Without: a discoverable (usernameless) sign-in. ' +
        'The identifier has its own rate limit (AUTH_RATE_LIMIT_PER_IDENTIFIER).',
      body: ref(PasskeyLoginOptionsBody),
      response: { 200: Envelope(ref(PasskeyRequestOptionsSchema)) }
    }
  }, async (request, reply) => {
    const { identifier } = request.body as typeof PasskeyLoginOptionsBody.static
    return reply.ok(await fastify.passkeySignIn.options(request.caller, identifier), { message: 'success.passkey_options' })
  })

  fastify.post('/login/verify', {
    config: { public: true, rateLimit: perIp },
    schema: {
      operationId: 'completePasskeyLogin',
      tags,
      summary: 'Finish a passkey sign-in: the assertion from navigator.credentials.get(); answers the tokens (amr webauthn, aal2)',
      description: 'An account with a second factor gets its tokens directly (a passkey is a strong factor). 400 PASSKEY_CHALLENGE_INVALID for an unknown, expired or used challenge; ' +
        '401 PASSKEY_INVALID for anything else that does not verify (unknown passkey, origin, relying party, signature, a counter that did not increase); 403 AUTH_ACCOUNT_INACTIVE.',
      body: ref(PasskeyLoginBody),
      response: { 200: Envelope(ref(TokenBundleSchema)) }
    }
  }, async (request, reply) => {
    const { credential } = request.body as typeof PasskeyLoginBody.static
    return reply.ok(await fastify.passkeySignIn.complete(request.caller, credential as AuthenticationResponseJSON), { message: 'success.login' })
  })

  fastify.get('/', {
    config: { permissions: [] },
    schema: { operationId: 'listPasskeys', tags, summary: 'Your passkeys', response: { 200: Envelope(ref(PasskeyListSchema)) } }
  }, async (request, reply) => reply.ok({ passkeys: await fastify.passkeys.list(request.caller) }))

  fastify.patch('/:passkey_id', {
    config: { permissions: [] },
    schema: {
      operationId: 'renamePasskey',
      tags,
      summary: 'Rename one of your passkeys',
      params: PasskeyId,
      body: ref(PasskeyRenameBody),
      response: { 200: Envelope(ref(PasskeySchema)) }
    }
  }, async (request, reply) => {
    const { name } = request.body as typeof PasskeyRenameBody.static
    return reply.ok(await fastify.passkeys.rename(request.caller, request.params.passkey_id, name), { message: 'success.passkey_renamed' })
  })

  fastify.delete('/:passkey_id', {
    config: { permissions: [] },
    schema: {
      operationId: 'removePasskey',
      tags,
      summary: 'Remove one of your passkeys (fresh login required)',
      description: '403 AUTH_REAUTH_REQUIRED without a login in the last REAUTH_WINDOW_MINUTES; 403 MFA_STEP_UP_REQUIRED when the account has a second factor and the session is not aal2.',
      params: PasskeyId,
      response: { 200: Envelope(Type.Object({ id: Type.String({ format: 'uuid' }), removed: Type.Literal(true) })) }
    }
  }, async (request, reply) => {
    await fastify.passkeys.remove(request.caller, request.params.passkey_id)
    return reply.ok({ id: request.params.passkey_id, removed: true as const }, { message: 'success.passkey_removed' })
  })
}

export default passkeys
