import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Envelope } from '../../../schemas/envelope.ts'
import { SignupBody, SignupResultSchema } from '../../../schemas/otp.ts'
import { ref } from '../../../schemas/ref.ts'

const signup: FastifyPluginAsyncTypebox = async (fastify) => {
  const { config } = fastify

  fastify.post('/verify', {
    config: { audited: true, public: true, rateLimit: { max: config.AUTH_RATE_LIMIT_PER_IP, timeWindow: 60_000 } },
    schema: {
      operationId: 'signUp',
      tags: ['auth'],
      summary: 'Sign up: a code sent for the purpose signup, profile basics and optionally a password; answers the tokens of a first session',
      description: 'First POST send-one-time-password with purpose signup. The address the code went to (email or phone) is verified and is ' +
        'the account\'s auth type; the account joins the group user. A second address (both email and phone_number, with signup_code_sent_to) ' +
        'starts unverified and gets a verification code at once (code_sent_to in the answer; confirm it at verify-email-and-phone). ' +
        'Without a password the account logs in with one-time passwords until set-password gives it one. ' +
        'Identifiers are normalised: emails lower-cased, phone numbers in E.164.',
      body: ref(SignupBody),
      response: { 201: Envelope(ref(SignupResultSchema)) }
    }
  }, async (request, reply) => {
    const bundle = await fastify.credentials.signUp(request.caller, request.body)
    return reply.ok(bundle, { message: 'success.signup', status: 201 })
  })
}

export default signup
