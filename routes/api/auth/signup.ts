import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Envelope } from '../../../schemas/envelope.ts'
import { TokenBundleSchema } from '../../../schemas/auth.ts'
import { SignupBody } from '../../../schemas/otp.ts'
import { ref } from '../../../schemas/ref.ts'

const signup: FastifyPluginAsyncTypebox = async (fastify) => {
  const { config } = fastify

  fastify.post('/verify', {
    config: { audited: true, public: true, rateLimit: { max: config.AUTH_RATE_LIMIT_PER_IP, timeWindow: 60_000 } },
    schema: {
      operationId: 'signUp',
      tags: ['auth'],
      summary: 'Sign up: a code sent for the purpose signup, the password and profile basics; answers the tokens of a first session',
      description: 'First POST send-one-time-password with purpose signup. The verified address (email or phone) becomes the ' +
        'account\'s identifier; the account joins the group user. Identifiers are normalised: emails lower-cased, phone numbers in E.164.',
      body: ref(SignupBody),
      response: { 201: Envelope(ref(TokenBundleSchema)) }
    }
  }, async (request, reply) => {
    const bundle = await fastify.credentials.signUp(request.caller, request.body)
    return reply.ok(bundle, { message: 'success.signup', status: 201 })
  })
}

export default signup
