import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Envelope } from '../../../schemas/envelope.ts'
import { UserSchema } from '../../../schemas/user.ts'
import { ChangePasswordBody, ForgetPasswordBody, PasswordChangedSchema, SetPasswordBody } from '../../../schemas/otp.ts'
import { ref } from '../../../schemas/ref.ts'

const tags = ['auth']

const password: FastifyPluginAsyncTypebox = async (fastify) => {
  const { config } = fastify
  const perIp = { max: config.AUTH_RATE_LIMIT_PER_IP, timeWindow: 60_000 }

  fastify.post('/set-password', {
    config: { audited: true, permissions: [], rateLimit: perIp },
    schema: {
      operationId: 'setPassword',
      tags,
      summary: 'Set a password on an account that has none (e.g. after a passwordless login)',
      description: `Needs a login of the last ${config.REAUTH_WINDOW_MINUTES} minutes (403 AUTH_REAUTH_REQUIRED otherwise); an account with a password uses change-password.`,
      body: ref(SetPasswordBody),
      response: { 200: Envelope(ref(UserSchema)) }
    }
  }, async (request, reply) => {
    const account = await fastify.credentials.setPassword(request.caller, request.body.password)
    return reply.ok(account, { message: 'success.password_set' })
  })

  fastify.post('/change-password', {
    config: { audited: true, permissions: [], rateLimit: perIp },
    schema: {
      operationId: 'changePassword',
      tags,
      summary: 'Change your password (the current one is required); signs out your other sessions',
      body: ref(ChangePasswordBody),
      response: { 200: Envelope(ref(PasswordChangedSchema)) }
    }
  }, async (request, reply) => {
    const body = request.body
    const result = await fastify.credentials.changePassword(request.caller, body.current_password, body.new_password)
    return reply.ok(result, { message: 'success.password_changed' })
  })

  fastify.post('/forget-password', {
    config: { audited: true, public: true, rateLimit: perIp },
    schema: {
      operationId: 'resetPassword',
      tags,
      summary: 'Reset a forgotten password with a code sent for the purpose reset_password',
      description: 'Signs out every session and returns no tokens: log in with the new password afterwards.',
      body: ref(ForgetPasswordBody),
      response: { 200: Envelope(ref(PasswordChangedSchema)) }
    }
  }, async (request, reply) => {
    const result = await fastify.credentials.resetPassword(request.caller, request.body)
    return reply.ok(result, { message: 'success.password_reset' })
  })
}

export default password
