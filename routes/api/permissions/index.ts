import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { Envelope, PaginationMeta, Uuid } from '../../../schemas/envelope.ts'
import { PermissionCreateBody, PermissionListQuery, PermissionSchema, PermissionUpdateBody } from '../../../schemas/admin.ts'
import { ref } from '../../../schemas/ref.ts'

const tags = ['permissions']
const params = Type.Object({ permission_id: Uuid() })

const permissions: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get('/', {
    config: { permissions: ['view_permission'] },
    schema: {
      operationId: 'listPermissions',
      tags,
      summary: 'List permissions, by codename',
      querystring: PermissionListQuery,
      response: { 200: Envelope(Type.Array(ref(PermissionSchema)), ref(PaginationMeta)) }
    }
  }, async (request, reply) => {
    const { limit, offset, cursor } = request.query
    const page = await fastify.permissionService.list(request.query)
    return reply.ok(page.items, { meta: { pagination: { limit, total: page.total, ...(cursor ? {} : { offset: offset ?? 0 }), next_cursor: page.nextCursor } } })
  })

  fastify.post('/', {
    config: { audited: true, permissions: ['add_permission'] },
    schema: {
      operationId: 'createPermission',
      tags,
      summary: 'Create a permission',
      description: 'A new permission is held by nobody until a group grants it. 409 CONFLICT when the codename is taken.',
      body: ref(PermissionCreateBody),
      response: { 201: Envelope(ref(PermissionSchema)) }
    }
  }, async (request, reply) => {
    const created = await fastify.permissionService.create(request.caller, request.body)
    return reply.ok(created, { message: 'success.permission_created', status: 201 })
  })

  fastify.get('/:permission_id', {
    config: { permissions: ['view_permission'] },
    schema: { operationId: 'getPermission', tags, summary: 'One permission', params, response: { 200: Envelope(ref(PermissionSchema)) } }
  }, async (request, reply) => reply.ok(await fastify.permissionService.get(request.params.permission_id)))

  fastify.put('/:permission_id', {
    config: { audited: true, permissions: ['edit_permission'] },
    schema: {
      operationId: 'updatePermission',
      tags,
      summary: 'Rename or describe a permission (its codename never changes)',
      params,
      body: ref(PermissionUpdateBody),
      response: { 200: Envelope(ref(PermissionSchema)) }
    }
  }, async (request, reply) => {
    const updated = await fastify.permissionService.update(request.caller, request.params.permission_id, request.body)
    return reply.ok(updated, { message: 'success.permission_updated' })
  })

  fastify.delete('/:permission_id', {
    config: { audited: true, permissions: ['delete_permission'] },
    schema: {
      operationId: 'deletePermission',
      tags,
      summary: 'Delete a permission',
      description: 'Groups stop granting it and their members lose it on their next request. Built-in permissions (is_default) ' +
        'are required by the API\'s routes and cannot be deleted (403 PERMISSION_PROTECTED).',
      params,
      response: { 200: Envelope(Type.Object({ permission_id: Type.String({ format: 'uuid' }), deleted: Type.Literal(true), affected_users: Type.Integer() })) }
    }
  }, async (request, reply) => {
    const { affectedUsers } = await fastify.permissionService.remove(request.caller, request.params.permission_id)
    return reply.ok({ permission_id: request.params.permission_id, deleted: true as const, affected_users: affectedUsers }, { message: 'success.permission_deleted' })
  })
}

export default permissions
