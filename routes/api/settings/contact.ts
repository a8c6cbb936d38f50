import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Envelope } from '../../../schemas/envelope.ts'
import { ChangeEmailBody, ChangePhoneBody, ContactChangeSchema } from '../../../schemas/otp.ts'
import { ref } from '../../../schemas/ref.ts'

const tags = ['settings']

const contact: FastifyPluginAsyncTypebox = async (fastify) => {
  const { config } = fastify
  const perIp = { max: config.AUTH_RATE_LIMIT_PER_IP, timeWindow: 60_000 }
  const steps = `Two steps. Without otp: needs a login of the last ${config.REAUTH_WINDOW_MINUTES} minutes or current_password, ` +
    'and sends a code to the new address (status otp_sent). With the otp: commits the change, marks the new address verified ' +
    'and notifies the old one (status changed).'

  fastify.post('/change-email', {
    config: { audited: true, permissions: ['edit_profile'], rateLimit: perIp },
    schema: {
      operationId: 'changeEmail',
      tags,
      summary: 'Change your email address',
      description: steps,
      body: ref(ChangeEmailBody),
      response: { 200: Envelope(ref(ContactChangeSchema)) }
    }
  }, async (request, reply) => {
    const result = await fastify.credentials.changeEmail(request.caller, request.body)
    return reply.ok(result, { message: result.status === 'changed' ? 'success.email_changed' : 'success.change_otp_sent' })
  })

  fastify.post('/change-phone', {
    config: { audited: true, permissions: ['edit_profile'], rateLimit: perIp },
    schema: {
      operationId: 'changePhone',
      tags,
      summary: 'Change your phone number',
      description: steps,
      body: ref(ChangePhoneBody),
      response: { 200: Envelope(ref(ContactChangeSchema)) }
    }
  }, async (request, reply) => {
    const result = await fastify.credentials.changePhone(request.caller, request.body)
    return reply.ok(result, { message: result.status === 'changed' ? 'success.phone_changed' : 'success.change_otp_sent' })
  })
}

export default contact
