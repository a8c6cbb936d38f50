import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Envelope } from '../../../schemas/envelope.ts'
import { UserSchema } from '../../../schemas/user.ts'
import { AcceptInvitationBody } from '../../../schemas/admin-users.ts'
import { ref } from '../../../schemas/ref.ts'

const tags = ['auth']

const invitation: FastifyPluginAsyncTypebox = async (fastify) => {
  const { config } = fastify

  fastify.post('/accept-invitation', {
    config: { audited: true, public: true, rateLimit: { max: config.AUTH_RATE_LIMIT_PER_IP, timeWindow: 60_000 } },
    schema: {
      operationId: 'acceptInvitation',
      tags,
      summary: 'Set the password of an invited account with its invitation code',
      description: `The code (sent when an administrator created the account without a password) works once, for ${config.INVITE_TTL_HOURS} ` +
        'hours, and only its latest resend; any failure is 400 INVITATION_INVALID. The address it went to becomes verified. ' +
        'Returns no tokens: log in with the new password afterwards.',
      body: ref(AcceptInvitationBody),
      response: { 200: Envelope(ref(UserSchema)) }
    }
  }, async (request, reply) => {
    const account = await fastify.invitations.accept(request.caller, request.body.code, request.body.password)
    return reply.ok(account, { message: 'success.invitation_accepted' })
  })
}

export default invitation
