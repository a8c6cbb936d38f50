import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { Envelope } from '../../../schemas/envelope.ts'

/** `DELETE P/users/{user_id}/mfa`: an administrator resets a user's second factors (issue 19). */
const userMfa: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.delete('/:user_id/mfa', {
    config: { audited: true, permissions: ['manage_users'] },
    schema: {
      operationId: 'resetUserMfa',
      tags: ['mfa'],
      summary: 'Remove every second factor and recovery code of a user (after proving their identity out of band)',
      description: 'Only super admins reset a super admin (403 PRIVILEGE_ESCALATION). The user is notified; their sessions continue.',
      params: Type.Object({ user_id: Type.String({ format: 'uuid' }) }),
      response: { 200: Envelope(Type.Object({ user_id: Type.String({ format: 'uuid' }), removed_factors: Type.Integer() })) }
    }
  }, async (request, reply) => {
    const removed = await fastify.mfa.resetForUser(request.caller, request.params.user_id)
    return reply.ok({ user_id: request.params.user_id, removed_factors: removed }, { message: 'success.mfa_reset' })
  })
}

export default userMfa
