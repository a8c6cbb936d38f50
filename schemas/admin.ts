import { Type, type Static } from '@sinclair/typebox'
import { ListQuery, literals, Nullable, OrNull, StrictObject } from './envelope.ts'
import { authTypes, userStatuses, userTypes } from '../domain/enums.ts'
import { languages } from '../i18n/index.ts'

/**
 * Permissions, groups, memberships and the user list (P/permissions, P/groups,
 * P/users). `is_system` is never accepted from a client: the bodies are strict,
 * so sending it is a 400.
 */

const Codename = Type.String({ pattern: '^[a-z][a-z0-9_]{1,63}$', description: 'lower_snake_case, 2-64 characters, starts with a letter' })
const Name = Type.String({ minLength: 1, maxLength: 100, pattern: '^[^\\u0000-\\u001f\\u007f]*$' })
const Description = OrNull(Type.String({ maxLength: 500 }))
/** A permission or group named by its id or its codename. */
const Reference = Type.String({ minLength: 1, maxLength: 64, description: 'An id (UUID) or a codename' })
const timestamps = { created_at: Type.String({ format: 'date-time' }), last_updated: Type.String({ format: 'date-time' }) }

export const PermissionSchema = Type.Object({
  permission_id: Type.String({ format: 'uuid' }),
  codename: Type.String(),
  name: Type.String(),
  category: Type.String(),
  description: Nullable(Type.String()),
  is_default: Type.Boolean({ description: 'One of the API\'s built-in permissions: routes require it, so it cannot be deleted' }),
  ...timestamps
}, { $id: 'Permission' })

export const PermissionCreateBody = StrictObject({
  codename: Codename,
  name: Name,
  category: Type.String({ minLength: 1, maxLength: 50, pattern: '^[a-z][a-z0-9_]*$' }),
  description: Type.Optional(Description)
}, { $id: 'PermissionCreateRequest' })

export const PermissionUpdateBody = StrictObject({
  name: Type.Optional(Name),
  category: Type.Optional(Type.String({ minLength: 1, maxLength: 50, pattern: '^[a-z][a-z0-9_]*$' })),
  description: Type.Optional(Description)
}, { $id: 'PermissionUpdateRequest', minProperties: 1, description: 'The codename is what routes check; it never changes' })

export const PermissionListQuery = Type.Object({
  ...ListQuery,
  category: Type.Optional(Type.String({ maxLength: 50 })),
  q: Type.Optional(Type.String({ minLength: 1, maxLength: 100, description: 'Search in codename, name and description' }))
})

export const GroupSchema = Type.Object({
  group_id: Type.String({ format: 'uuid' }),
  codename: Type.String(),
  name: Type.String(),
  description: Nullable(Type.String()),
  is_system: Type.Boolean({ description: 'A built-in group: only super admins change it, nobody deletes it' }),
  is_active: Type.Boolean({ description: 'An inactive group grants nothing and cannot be assigned' }),
  require_mfa: Type.Boolean({ description: 'Members without a second factor get 403 MFA_ENROLMENT_REQUIRED on everything but enrolment, logout and token-info' }),
  permissions: Type.Array(Type.String(), { description: 'Codenames of the permissions the group grants' }),
  member_count: Type.Integer(),
  ...timestamps
}, { $id: 'Group' })

export const GroupCreateBody = StrictObject({
  codename: Codename,
  name: Name,
  description: Type.Optional(Description),
  is_active: Type.Optional(Type.Boolean({ default: true })),
  require_mfa: Type.Optional(Type.Boolean({ default: false, description: 'Members must enrol a second factor' })),
  permissions: Type.Optional(Type.Array(Reference, { maxItems: 500, uniqueItems: true, description: 'Permissions to grant (ids or codenames); you must hold each of them' }))
}, { $id: 'GroupCreateRequest' })

export const GroupUpdateBody = StrictObject({
  codename: Type.Optional(Codename),
  name: Type.Optional(Name),
  description: Type.Optional(Description),
  is_active: Type.Optional(Type.Boolean()),
  require_mfa: Type.Optional(Type.Boolean({ description: 'Members must enrol a second factor; applies on their next request' }))
}, { $id: 'GroupUpdateRequest', minProperties: 1, description: 'System groups: super admins only, and their codename and activity never change' })

export const GroupPermissionsBody = StrictObject({
  permissions: Type.Array(Reference, { maxItems: 500, uniqueItems: true, description: 'The complete new set (ids or codenames); each one added must be held by you' })
}, { $id: 'GroupPermissionsRequest' })

export const GroupListQuery = Type.Object({
  ...ListQuery,
  is_active: Type.Optional(Type.Boolean()),
  is_system: Type.Optional(Type.Boolean()),
  q: Type.Optional(Type.String({ minLength: 1, maxLength: 100, description: 'Search in codename, name and description' }))
})

export const MembershipSchema = Type.Object({
  group_id: Type.String({ format: 'uuid' }),
  codename: Type.String(),
  name: Type.String(),
  is_system: Type.Boolean(),
  is_active: Type.Boolean(),
  assigned_at: Type.String({ format: 'date-time' })
}, { $id: 'Membership', description: 'A group a user belongs to' })

export const UserGroupsBody = StrictObject({
  groups: Type.Array(Reference, { maxItems: 100, uniqueItems: true, description: 'Groups (ids or codenames)' }),
  action: Type.Optional(literals(['set', 'add', 'remove'] as const, { default: 'set', description: 'set (default): exactly these groups; add: these too; remove: not these' }))
}, { $id: 'UserGroupsRequest' })

export const UserPermissionsSchema = Type.Object({
  user_id: Type.String({ format: 'uuid' }),
  is_super_admin: Type.Boolean({ description: 'Member of the active super_admin group with an active account: passes every permission check' }),
  permissions: Type.Array(Type.Object({
    codename: Type.String(),
    name: Type.String(),
    category: Type.String(),
    granted_by: Type.Array(Type.String(), { description: 'Codenames of the active groups granting it' })
  }))
}, { $id: 'UserPermissions' })

export const UserStatusBody = StrictObject({
  is_active: Type.Boolean({ description: 'false deactivates the account and signs out all its sessions' }),
  reason: Type.Optional(Type.String({ maxLength: 500, description: 'Kept in the audit log' }))
}, { $id: 'UserStatusRequest' })

export const userSortFields = ['created_at', 'last_login', 'email'] as const

export const UserListQuery = Type.Object({
  ...ListQuery,
  q: Type.Optional(Type.String({ minLength: 1, maxLength: 100, description: 'Search in email, first and last name, phone number and user name (case-insensitive, substring)' })),
  status: Type.Optional(literals(userStatuses)),
  is_active: Type.Optional(Type.Boolean()),
  user_type: Type.Optional(literals(userTypes)),
  auth_type: Type.Optional(literals(authTypes)),
  country: Type.Optional(Type.String({ pattern: '^[A-Za-z]{2}$' })),
  language: Type.Optional(literals(languages)),
  group: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'Members of this group (id or codename)' })),
  sort: Type.Optional(literals(userSortFields, { default: 'created_at' })),
  order: Type.Optional(literals(['asc', 'desc'] as const, { default: 'desc' }))
})

export const adminSchemas = [
  PermissionSchema, PermissionCreateBody, PermissionUpdateBody, GroupSchema, GroupCreateBody, GroupUpdateBody,
  GroupPermissionsBody, MembershipSchema, UserGroupsBody, UserPermissionsSchema, UserStatusBody
]

/** What services return for these answers: the response schemas' own types, never restated by hand. */
export type PermissionView = Static<typeof PermissionSchema>
export type GroupView = Static<typeof GroupSchema>
export type MembershipView = Static<typeof MembershipSchema>
export type UserPermissionsView = Static<typeof UserPermissionsSchema>
