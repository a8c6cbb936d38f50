import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { Envelope, Uuid } from '../../../schemas/envelope.ts'
import { UserSchema } from '../../../schemas/user.ts'
import { SessionSchema } from '../../../schemas/auth.ts'
import { OtpSentSchema } from '../../../schemas/otp.ts'
import {
  AdminPasswordResetBody, InvitationResendBody, InvitationSentSchema, SessionsRevokedSchema, UserCreateBody, UserCreatedSchema,
  UserRemovedSchema, UserUnlockedSchema, UserUpdateBody
} from '../../../schemas/admin-users.ts'
import { ref } from '../../../schemas/ref.ts'
import { bodyOptional } from '../../../plugins/app/http/envelope.ts'

/**
 * Administrators managing one user's account: view_user reads, manage_users
 * changes. The service (plugins/app/accounts/admin-users.ts) applies SR-27 and
 * writes the audit rows.
 */
const tags = ['users']
const params = Type.Object({ user_id: Uuid() })
const superAdminRule = 'Only super admins change a super admin\'s account (403 PRIVILEGE_ESCALATION).'

const adminUsers: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.post('/', {
    config: { audited: true, permissions: ['manage_users'] },
    schema: {
      operationId: 'createUser',
      tags,
      summary: 'Create a user; without a password, an invitation is sent',
      description: 'With email and/or phone_number. The account joins `groups` (default: user); you must hold every permission ' +
        'they grant (403 PRIVILEGE_ESCALATION), so only super admins create super admins. Without a password, a single-use ' +
        `invitation code valid ${fastify.config.INVITE_TTL_HOURS} hours goes to the email (or the phone with invitation_channel); ` +
        'the user sets a password with it at POST P/auth/accept-invitation. A taken address is 409.',
      body: ref(UserCreateBody),
      response: { 201: Envelope(UserCreatedSchema) }
    }
  }, async (request, reply) => {
    const result = await fastify.adminUsers.create(request.caller, request.body)
    return reply.ok(result, { message: 'success.user_created', status: 201 })
  })

  fastify.get('/:user_id', {
    config: { permissions: ['view_user'] },
    schema: { operationId: 'getUser', tags, summary: 'A user\'s account', params, response: { 200: Envelope(ref(UserSchema)) } }
  }, async (request, reply) => reply.ok(await fastify.adminUsers.get(request.params.user_id)))

  fastify.patch('/:user_id', {
    config: { audited: true, permissions: ['manage_users'] },
    schema: {
      operationId: 'updateUser',
      tags,
      summary: 'Change a user\'s profile, addresses, verified flags, language or status',
      description: `${superAdminRule} A new email or phone number is unverified unless the verified flag is sent with it. ` +
        'is_active false signs out every session at once; the last active super admin stays active (409 LAST_SUPER_ADMIN). ' +
        'Groups change through POST P/users/{user_id}/groups.',
      params,
      body: ref(UserUpdateBody),
      response: { 200: Envelope(ref(UserSchema)) }
    }
  }, async (request, reply) => {
    const result = await fastify.adminUsers.update(request.caller, request.params.user_id, request.body)
    return reply.ok(result, { message: 'success.user_updated' })
  })

  fastify.delete('/:user_id', {
    config: { audited: true, permissions: ['manage_users'] },
    schema: {
      operationId: 'deleteUser',
      tags,
      summary: 'Delete a user: anonymise the account and end every session',
      description: `${superAdminRule} The row stays, with every personal field cleared and status deleted; its sessions and ` +
        'group memberships are deleted and its tokens are refused from the next request. Activity rows keep the user id. ' +
        'Your own account is deleted through DELETE P/settings (409 here).',
      params,
      response: { 200: Envelope(ref(UserRemovedSchema)) }
    }
  }, async (request, reply) => {
    const result = await fastify.adminUsers.remove(request.caller, request.params.user_id)
    return reply.ok(result, { message: 'success.user_deleted' })
  })

  fastify.get('/:user_id/sessions', {
    config: { permissions: ['view_user'] },
    schema: { operationId: 'listUserSessions', tags, summary: 'A user\'s active sessions', params, response: { 200: Envelope(Type.Array(ref(SessionSchema))) } }
  }, async (request, reply) => reply.ok(await fastify.adminUsers.sessions(request.params.user_id)))

  fastify.delete('/:user_id/sessions', {
    config: { audited: true, permissions: ['manage_users'] },
    schema: {
      operationId: 'revokeUserSessions',
      tags,
      summary: 'End every session of a user',
      description: `${superAdminRule} The tokens are refused from the next request.`,
      params,
      response: { 200: Envelope(ref(SessionsRevokedSchema)) }
    }
  }, async (request, reply) => {
    const revoked = await fastify.adminUsers.revokeSessions(request.caller, request.params.user_id)
    return reply.ok({ revoked_sessions: revoked }, { message: 'success.sessions_revoked' })
  })

  fastify.delete('/:user_id/sessions/:session_id', {
    config: { audited: true, permissions: ['manage_users'] },
    schema: {
      operationId: 'revokeUserSession',
      tags,
      summary: 'End one session of a user',
      description: `${superAdminRule} 404 when the user has no active session with that id.`,
      params: Type.Object({ user_id: Uuid(), session_id: Uuid() }),
      response: { 200: Envelope(ref(SessionsRevokedSchema)) }
    }
  }, async (request, reply) => {
    const revoked = await fastify.adminUsers.revokeSessions(request.caller, request.params.user_id, request.params.session_id)
    return reply.ok({ revoked_sessions: revoked }, { message: 'success.sessions_revoked' })
  })

  fastify.post('/:user_id/password-reset', {
    config: { audited: true, permissions: ['manage_users'] },
    preValidation: bodyOptional,
    schema: {
      operationId: 'sendUserPasswordReset',
      tags,
      summary: 'Send a user a password reset code',
      description: `${superAdminRule} A reset_password code goes to the user's email (default) or phone; the user sets a new ` +
        'password with it at POST P/auth/forget-password. No password is ever shown. 409 NO_CONTACT_ADDRESS when the ' +
        'account has no address on that channel.',
      params,
      body: ref(AdminPasswordResetBody),
      response: { 200: Envelope(ref(OtpSentSchema)) }
    }
  }, async (request, reply) => {
    const sent = await fastify.adminUsers.sendPasswordReset(request.caller, request.params.user_id, request.body.channel)
    return reply.ok(sent, { message: 'success.password_reset_sent' })
  })

  fastify.post('/:user_id/unlock', {
    config: { audited: true, permissions: ['manage_users'] },
    schema: {
      operationId: 'unlockUser',
      tags,
      summary: 'Lift a user\'s login lockout',
      description: `${superAdminRule} Clears the lock and the count of failed attempts; unlocked says whether there was any.`,
      params,
      response: { 200: Envelope(ref(UserUnlockedSchema)) }
    }
  }, async (request, reply) => {
    const unlocked = await fastify.adminUsers.unlock(request.caller, request.params.user_id)
    return reply.ok({ user_id: request.params.user_id, unlocked }, { message: 'success.user_unlocked' })
  })

  fastify.post('/:user_id/invitation', {
    config: { audited: true, permissions: ['manage_users'] },
    preValidation: bodyOptional,
    schema: {
      operationId: 'resendUserInvitation',
      tags,
      summary: 'Send a user without a password a new invitation',
      description: `${superAdminRule} The previous invitation stops working. 409 CONFLICT when the account has a password.`,
      params,
      body: ref(InvitationResendBody),
      response: { 200: Envelope(ref(InvitationSentSchema)) }
    }
  }, async (request, reply) => {
    const sent = await fastify.adminUsers.resendInvitation(request.caller, request.params.user_id, request.body.channel)
    return reply.ok(sent, { message: 'success.invitation_sent' })
  })
}

export default adminUsers
