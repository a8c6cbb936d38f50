import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { Envelope, PaginationMeta, Uuid } from '../../../schemas/envelope.ts'
import { MembershipSchema, UserGroupsBody, UserListQuery, UserPermissionsSchema, UserStatusBody } from '../../../schemas/admin.ts'
import { UserSchema } from '../../../schemas/user.ts'
import { ref } from '../../../schemas/ref.ts'

const tags = ['users']
const params = Type.Object({ user_id: Uuid() })
const memberships = Envelope(Type.Array(ref(MembershipSchema)))

const users: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get('/', {
    config: { permissions: ['manage_users'] },
    schema: {
      operationId: 'listUsers',
      tags,
      summary: 'List and search users',
      description: 'q searches email, first and last name, phone number and user name (case-insensitive substring). Filters combine ' +
        'with AND. Sorted by created_at (default), last_login or email, desc (default) or asc; paginate with next_cursor (or offset).',
      querystring: UserListQuery,
      response: { 200: Envelope(Type.Array(ref(UserSchema)), ref(PaginationMeta)) }
    }
  }, async (request, reply) => {
    const { limit, offset, cursor } = request.query
    const page = await fastify.userDirectory.list(request.query)
    return reply.ok(page.items, { meta: { pagination: { limit, total: page.total, ...(cursor ? {} : { offset: offset ?? 0 }), next_cursor: page.nextCursor } } })
  })

  // Static segments win over parameters in the router, so /me/... never reaches /:user_id/....
  fastify.get('/me/groups', {
    config: { permissions: [] },
    schema: { operationId: 'listMyGroups', tags, summary: 'Your groups', response: { 200: memberships } }
  }, async (request, reply) => reply.ok(await fastify.memberships.groupsOf(request.auth!.userId)))

  fastify.get('/me/permissions', {
    config: { permissions: [] },
    schema: { operationId: 'listMyPermissions', tags, summary: 'Your permissions, and the groups granting each', response: { 200: Envelope(ref(UserPermissionsSchema)) } }
  }, async (request, reply) => reply.ok(await fastify.memberships.permissionsOf(request.auth!.userId)))

  fastify.get('/:user_id/groups', {
    config: { permissions: ['view_user'] },
    schema: { operationId: 'listUserGroups', tags, summary: 'A user\'s groups', params, response: { 200: memberships } }
  }, async (request, reply) => reply.ok(await fastify.memberships.groupsOf(request.params.user_id)))

  fastify.post('/:user_id/groups', {
    config: { audited: true, permissions: ['assign_groups'] },
    schema: {
      operationId: 'changeUserGroups',
      tags,
      summary: 'Set, add or remove a user\'s groups',
      description: 'Any active group can be assigned (409 CONFLICT for an inactive one), if you hold every permission it grants ' +
        '(403 PRIVILEGE_ESCALATION). Only super admins add or remove super_admin membership, and the last active super admin ' +
        'keeps it (409 LAST_SUPER_ADMIN). The user sees the change on their next request.',
      params,
      body: ref(UserGroupsBody),
      response: { 200: memberships }
    }
  }, async (request, reply) => {
    const body = request.body
    const result = await fastify.memberships.change(request.caller, request.params.user_id, body.groups, body.action ?? 'set')
    return reply.ok(result, { message: 'success.user_groups_updated' })
  })

  fastify.get('/:user_id/permissions', {
    config: { permissions: ['view_user'] },
    schema: { operationId: 'listUserPermissions', tags, summary: 'A user\'s permissions, and the groups granting each', params, response: { 200: Envelope(ref(UserPermissionsSchema)) } }
  }, async (request, reply) => reply.ok(await fastify.memberships.permissionsOf(request.params.user_id)))

  fastify.put('/:user_id/status', {
    config: { audited: true, permissions: ['manage_users'] },
    schema: {
      operationId: 'setUserStatus',
      tags,
      summary: 'Activate or deactivate a user',
      description: 'Deactivating signs out every session of the user at once. Only super admins change a super admin\'s status ' +
        '(403 PRIVILEGE_ESCALATION), and the last active super admin stays active (409 LAST_SUPER_ADMIN). Deleted accounts cannot ' +
        'be reactivated (404).',
      params,
      body: ref(UserStatusBody),
      response: { 200: Envelope(ref(UserSchema)) }
    }
  }, async (request, reply) => {
    const body = request.body
    const result = await fastify.accounts.setActive(request.caller, request.params.user_id, body.is_active, body.reason)
    return reply.ok(result, { message: 'success.user_status_updated' })
  })
}

export default users
