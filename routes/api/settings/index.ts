import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { Envelope } from '../../../schemas/envelope.ts'
import { AppError } from '../../../schemas/errors.ts'
import { UserSchema } from '../../../schemas/user.ts'
import { toPublicUser } from '../../../plugins/app/users.ts'

const tags = ['settings']

const settings: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get('/profile', {
    config: { permissions: ['view_profile'] },
    schema: { tags, summary: 'Your profile', response: { 200: Envelope(Type.Ref(UserSchema)) } }
  }, async (request, reply) => {
    const auth = request.auth!
    // A session token carries a profile snapshot; it is served while the account is unchanged since.
    if (auth.tokenType === 'session' && auth.claims.profile && auth.claims.lu === auth.state.lu) {
      return reply.ok(auth.claims.profile)
    }
    const row = await fastify.users.findById(auth.userId)
    if (!row) throw new AppError('USER_NOT_FOUND')
    return reply.ok(toPublicUser(row))
  })
}

export default settings
