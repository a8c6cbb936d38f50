import { boolean, index, pgTable, primaryKey, text, timestamp, uuid } from 'drizzle-orm/pg-core'
import { user } from './users.ts'

const timestamptz = (name: string) => timestamp(name, { withTimezone: true })

/** A capability a route can require, named by its codename (e.g. `view_user`). */
export const permission = pgTable('permission', {
  permission_id: uuid('permission_id').primaryKey().defaultRandom(),
  name: text('name').notNull(),
  codename: text('codename').notNull().unique('permission_codename_key'),
  category: text('category').notNull(),
  description: text('description'),
  created_at: timestamptz('created_at').notNull().defaultNow(),
  last_updated: timestamptz('last_updated').notNull().defaultNow()
})

/** A role. System groups (the defaults) are protected from deletion and renaming by the API. */
export const group = pgTable('group', {
  group_id: uuid('group_id').primaryKey().defaultRandom(),
  name: text('name').notNull().unique('group_name_key'),
  codename: text('codename').notNull().unique('group_codename_key'),
  description: text('description'),
  is_system: boolean('is_system').notNull().default(false),
  is_active: boolean('is_active').notNull().default(true),
  // Members without a verified second factor are refused everything but enrolment (MFA_ENROLMENT_REQUIRED).
  require_mfa: boolean('require_mfa').notNull().default(false),
  created_at: timestamptz('created_at').notNull().defaultNow(),
  last_updated: timestamptz('last_updated').notNull().defaultNow()
})

export const groupPermission = pgTable('group_permission', {
  group_id: uuid('group_id').notNull().references(() => group.group_id, { onDelete: 'cascade' }),
  permission_id: uuid('permission_id').notNull().references(() => permission.permission_id, { onDelete: 'cascade' }),
  created_at: timestamptz('created_at').notNull().defaultNow()
}, (t) => [
  primaryKey({ name: 'group_permission_pkey', columns: [t.group_id, t.permission_id] }),
  // The primary key serves lookups by group; deleting a permission and
  // "which groups grant X" need the other direction.
  index('group_permission_permission_id_idx').on(t.permission_id)
])

export const userGroup = pgTable('user_group', {
  user_id: uuid('user_id').notNull().references(() => user.user_id, { onDelete: 'cascade' }),
  group_id: uuid('group_id').notNull().references(() => group.group_id, { onDelete: 'cascade' }),
  created_at: timestamptz('created_at').notNull().defaultNow()
}, (t) => [
  primaryKey({ name: 'user_group_pkey', columns: [t.user_id, t.group_id] }),
  // Members of a group (role statistics, "who is affected by this group change").
  index('user_group_group_id_idx').on(t.group_id)
])

export type Permission = typeof permission.$inferSelect
export type NewPermission = typeof permission.$inferInsert
export type Group = typeof group.$inferSelect
export type NewGroup = typeof group.$inferInsert
export type GroupPermission = typeof groupPermission.$inferSelect
export type UserGroup = typeof userGroup.$inferSelect
