import { check, index, integer, jsonb, pgTable, primaryKey, text, timestamp, uuid } from 'drizzle-orm/pg-core'
import { inList } from './checks.ts'
import { user } from './users.ts'
import { activityLevels } from '../../domain/enums.ts'

// The value list is defined in domain/enums.ts (schemas/ states it too); re-exported with its table.
export { activityLevels }
export type { ActivityLevel } from '../../domain/enums.ts'

/**
 * The audit trail (SR-38). Rows outlive their actor: deleting a user keeps the
 * events with a NULL actor. `session_id` and `target_user_id` carry no foreign
 * key on purpose, so deleting a session or a target never rewrites history.
 *
 * On PostgreSQL (and PGlite) the table is partitioned by RANGE (created_at), a
 * partition per ACTIVITY_PARTITION_INTERVAL: migration 0002 converts it and
 * plugins/app/activity/partitions.ts keeps partitions ahead and drops expired ones
 * (docs/activity-log.md). Drizzle cannot declare partitioning, so this definition is
 * the parent table's columns, keys and indexes, which every partition inherits. The
 * primary key includes the partition key, as PostgreSQL requires of a unique index
 * on a partitioned table; log ids are UUIDv7, so it stays time-ordered.
 */
export const activityLog = pgTable('activity_log', {
  log_id: uuid('log_id').notNull().defaultRandom(),
  user_id: uuid('user_id').references(() => user.user_id, { onDelete: 'set null' }),
  level: text('level', { enum: activityLevels }).notNull(),
  action: text('action').notNull(),
  module: text('module').notNull(),
  message: text('message'),
  ip_address: text('ip_address'),
  user_agent: text('user_agent'),
  device: text('device'),
  browser: text('browser'),
  os: text('os'),
  endpoint: text('endpoint'),
  method: text('method'),
  status_code: integer('status_code'),
  request_id: text('request_id'),
  session_id: uuid('session_id'),
  target_user_id: uuid('target_user_id'),
  duration_ms: integer('duration_ms'),
  metadata: jsonb('metadata').$type<Record<string, unknown>>(),
  created_at: timestamp('created_at', { withTimezone: true }).notNull().defaultNow()
}, (t) => [
  primaryKey({ name: 'activity_log_pkey', columns: [t.log_id, t.created_at] }),
  check('activity_log_level_check', inList(t.level, activityLevels)),
  // Keyset pagination newest first: (created_at, log_id) is unique and ordered.
  // NULLS FIRST is what a plain `ORDER BY ... DESC` means in Postgres; drizzle-kit's
  // default (NULLS LAST) would give an index the planner cannot use for that sort.
  index('activity_log_created_at_log_id_idx').on(t.created_at.desc().nullsFirst(), t.log_id.desc().nullsFirst()),
  // One per list filter, each ending in the sort key so a filtered page is an index range.
  index('activity_log_user_id_created_at_idx').on(t.user_id, t.created_at.desc().nullsFirst()),
  index('activity_log_action_created_at_idx').on(t.action, t.created_at.desc().nullsFirst()),
  index('activity_log_module_created_at_idx').on(t.module, t.created_at.desc().nullsFirst()),
  index('activity_log_level_created_at_idx').on(t.level, t.created_at.desc().nullsFirst()),
  index('activity_log_ip_address_created_at_idx').on(t.ip_address, t.created_at.desc().nullsFirst())
])

export type ActivityLog = typeof activityLog.$inferSelect
export type NewActivityLog = typeof activityLog.$inferInsert
