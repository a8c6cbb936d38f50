import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { Envelope, PaginationMeta, Uuid } from '../../../schemas/envelope.ts'
import { GroupCreateBody, GroupListQuery, GroupPermissionsBody, GroupSchema, GroupUpdateBody } from '../../../schemas/admin.ts'
import { ref } from '../../../schemas/ref.ts'

const tags = ['groups']
const params = Type.Object({ group_id: Uuid() })

const groups: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get('/', {
    config: { permissions: ['view_group'] },
    schema: {
      operationId: 'listGroups',
      tags,
      summary: 'List groups with their permissions and member counts, by codename',
      querystring: GroupListQuery,
      response: { 200: Envelope(Type.Array(ref(GroupSchema)), ref(PaginationMeta)) }
    }
  }, async (request, reply) => {
    const { limit, offset, cursor } = request.query
    const page = await fastify.groupService.list(request.query)
    return reply.ok(page.items, { meta: { pagination: { limit, total: page.total, ...(cursor ? {} : { offset: offset ?? 0 }), next_cursor: page.nextCursor } } })
  })

  fastify.post('/', {
    config: { audited: true, permissions: ['add_group'] },
    schema: {
      operationId: 'createGroup',
      tags,
      summary: 'Create a group',
      description: 'You must hold every permission the group grants (403 PRIVILEGE_ESCALATION). is_system cannot be set: groups made ' +
        'through the API are never system groups.',
      body: ref(GroupCreateBody),
      response: { 201: Envelope(ref(GroupSchema)) }
    }
  }, async (request, reply) => {
    const created = await fastify.groupService.create(request.caller, request.body)
    return reply.ok(created, { message: 'success.group_created', status: 201 })
  })

  fastify.get('/:group_id', {
    config: { permissions: ['view_group'] },
    schema: { operationId: 'getGroup', tags, summary: 'One group', params, response: { 200: Envelope(ref(GroupSchema)) } }
  }, async (request, reply) => reply.ok(await fastify.groupService.get(request.params.group_id)))

  fastify.put('/:group_id', {
    config: { audited: true, permissions: ['edit_group'] },
    schema: {
      operationId: 'updateGroup',
      tags,
      summary: 'Change a group',
      description: 'System groups: super admins only (403 SYSTEM_GROUP_PROTECTED), and their codename and activity never change. ' +
        'Reactivating a group grants its permissions again, so you must hold them. Deactivating one takes its permissions from its ' +
        'members on their next request.',
      params,
      body: ref(GroupUpdateBody),
      response: { 200: Envelope(ref(GroupSchema)) }
    }
  }, async (request, reply) => {
    const updated = await fastify.groupService.update(request.caller, request.params.group_id, request.body)
    return reply.ok(updated, { message: 'success.group_updated' })
  })

  fastify.delete('/:group_id', {
    config: { audited: true, permissions: ['delete_group'] },
    schema: {
      operationId: 'deleteGroup',
      tags,
      summary: 'Delete a group (never a system group)',
      params,
      response: { 200: Envelope(Type.Object({ group_id: Type.String({ format: 'uuid' }), deleted: Type.Literal(true), affected_users: Type.Integer() })) }
    }
  }, async (request, reply) => {
    const { affectedUsers } = await fastify.groupService.remove(request.caller, request.params.group_id)
    return reply.ok({ group_id: request.params.group_id, deleted: true as const, affected_users: affectedUsers }, { message: 'success.group_deleted' })
  })

  fastify.post('/:group_id/permissions', {
    config: { audited: true, permissions: ['edit_group'] },
    schema: {
      operationId: 'changeGroupPermissions',
      tags,
      summary: 'Set the permissions a group grants',
      description: 'The body is the complete new set. Each permission added must be held by you (403 PRIVILEGE_ESCALATION); system ' +
        'groups are changed by super admins only. Members see the change on their next request.',
      params,
      body: ref(GroupPermissionsBody),
      response: { 200: Envelope(ref(GroupSchema)) }
    }
  }, async (request, reply) => {
    const { permissions } = request.body
    const updated = await fastify.groupService.setPermissions(request.caller, request.params.group_id, permissions)
    return reply.ok(updated, { message: 'success.group_permissions_updated' })
  })
}

export default groups
