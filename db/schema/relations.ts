import { relations } from 'drizzle-orm'
import { activityLog } from './activity.ts'
import { media } from './media.ts'
import { group, groupPermission, permission, userGroup } from './rbac.ts'
import { session } from './sessions.ts'
import { user } from './users.ts'

// Relations only feed Drizzle's relational query API (`db.query.user.findFirst({ with: ... })`);
// they change nothing in the database, the foreign keys live in the tables.

export const userRelations = relations(user, ({ many }) => ({
  groups: many(userGroup),
  sessions: many(session),
  media: many(media),
  activity: many(activityLog)
}))

export const permissionRelations = relations(permission, ({ many }) => ({
  groups: many(groupPermission)
}))

export const groupRelations = relations(group, ({ many }) => ({
  permissions: many(groupPermission),
  members: many(userGroup)
}))

export const groupPermissionRelations = relations(groupPermission, ({ one }) => ({
  group: one(group, { fields: [groupPermission.group_id], references: [group.group_id] }),
  permission: one(permission, { fields: [groupPermission.permission_id], references: [permission.permission_id] })
}))

export const userGroupRelations = relations(userGroup, ({ one }) => ({
  user: one(user, { fields: [userGroup.user_id], references: [user.user_id] }),
  group: one(group, { fields: [userGroup.group_id], references: [group.group_id] })
}))

export const sessionRelations = relations(session, ({ one }) => ({
  user: one(user, { fields: [session.user_id], references: [user.user_id] })
}))

export const mediaRelations = relations(media, ({ one }) => ({
  user: one(user, { fields: [media.user_id], references: [user.user_id] })
}))

export const activityLogRelations = relations(activityLog, ({ one }) => ({
  user: one(user, { fields: [activityLog.user_id], references: [user.user_id] })
}))
