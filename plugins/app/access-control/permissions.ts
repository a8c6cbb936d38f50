import fp from 'fastify-plugin'
import type { Static } from '@sinclair/typebox'
import type { Permission } from '../../../db/schema/index.ts'
import { allPermissionCodenames } from '../../../db/defaults.ts'
import { AppError } from '../../../schemas/errors.ts'
import type { PermissionCreateBody, PermissionSchema, PermissionUpdateBody } from '../../../schemas/admin.ts'
import type { Caller } from '../auth/caller.ts'
import type { ListOptions, ListPage } from './listing.ts'
import type { PermissionFilters } from './permission-repository.ts'

/**
 * The permission catalogue (P/permissions). Built-in permissions (the ones routes
 * require) are never deleted. Every change writes an audit row; a deletion, after
 * its transaction commits, bumps the permission version of the users who held it
 * (SR-22), so tokens in flight see it on their next request.
 */
export type PermissionView = Static<typeof PermissionSchema>

export interface PermissionService {
  list: (options: ListOptions & PermissionFilters) => Promise<ListPage<PermissionView>>
  get: (id: string) => Promise<PermissionView>
  create: (caller: Caller, input: Static<typeof PermissionCreateBody>) => Promise<PermissionView>
  update: (caller: Caller, id: string, changes: Static<typeof PermissionUpdateBody>) => Promise<PermissionView>
  remove: (caller: Caller, id: string) => Promise<{ affectedUsers: number }>
}

declare module 'fastify' {
  interface FastifyInstance { permissionService: PermissionService }
}

const defaultCodenames = new Set<string>(allPermissionCodenames)

const toPermissionView = (row: Permission): PermissionView => ({
  permission_id: row.permission_id,
  codename: row.codename,
  name: row.name,
  category: row.category,
  description: row.description,
  is_default: defaultCodenames.has(row.codename),
  created_at: row.created_at.toISOString(),
  last_updated: row.last_updated.toISOString()
})

export default fp(async (fastify) => {
  const { db, permissionRepository: permissions } = fastify
  const now = () => new Date(fastify.now())

  const service: PermissionService = {
    async list (options) {
      const page = await permissions.list(options)
      return { ...page, items: page.items.map(toPermissionView) }
    },

    async get (id) {
      const row = await permissions.find(id)
      if (!row) throw new AppError('PERMISSION_NOT_FOUND')
      return toPermissionView(row)
    },

    async create (caller, input) {
      const at = now()
      const row = await permissions.create({
        codename: input.codename, name: input.name, category: input.category, description: input.description ?? null, created_at: at, last_updated: at
      })
      await fastify.audit(caller, { action: 'permission_create', module: 'rbac', metadata: { permission_id: row.permission_id, codename: row.codename } })
      return toPermissionView(row)
    },

    async update (caller, id, changes) {
      const row = await permissions.update(id, { ...changes, last_updated: now() })
      if (!row) throw new AppError('PERMISSION_NOT_FOUND')
      await fastify.audit(caller, { action: 'permission_update', module: 'rbac', metadata: { permission_id: id, codename: row.codename, fields: Object.keys(changes) } })
      return toPermissionView(row)
    },

    async remove (caller, id) {
      const outcome = await db.transaction(async (tx) => {
        const row = await permissions.lock(tx, id)
        if (!row) throw new AppError('PERMISSION_NOT_FOUND')
        if (defaultCodenames.has(row.codename)) throw new AppError('PERMISSION_PROTECTED', { details: { codename: row.codename } })
        const affected = await permissions.holders(id, tx)
        await permissions.delete(id, tx)
        return { row, affected }
      })
      await fastify.sessions.permissionsChanged(outcome.affected)
      await fastify.audit(caller, {
        action: 'permission_delete',
        module: 'rbac',
        level: 'warning',
        metadata: { permission_id: id, codename: outcome.row.codename, affected_users: outcome.affected.length }
      })
      return { affectedUsers: outcome.affected.length }
    }
  }
  fastify.decorate('permissionService', service)
}, { name: 'permission-service', dependencies: ['db', 'permission-repository', 'sessions', 'activity'] })
