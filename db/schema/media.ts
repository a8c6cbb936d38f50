import { sql } from 'drizzle-orm'
import { bigint, check, index, pgTable, text, timestamp, uuid } from 'drizzle-orm/pg-core'
import { inList } from './checks.ts'
import { user } from './users.ts'
import { mediaPurposes } from '../../domain/enums.ts'

// The value list is defined in domain/enums.ts (schemas/ states it too); re-exported with its table.
export { mediaPurposes }
export type { MediaPurpose } from '../../domain/enums.ts'

/** Uploaded files. The object key is server-generated (SR-37), unique across drivers. */
export const media = pgTable('media', {
  media_id: uuid('media_id').primaryKey().defaultRandom(),
  user_id: uuid('user_id').notNull().references(() => user.user_id, { onDelete: 'cascade' }),
  storage_driver: text('storage_driver').notNull(),
  object_key: text('object_key').notNull().unique('media_object_key_key'),
  mime_type: text('mime_type').notNull(),
  extension: text('extension'),
  size_bytes: bigint('size_bytes', { mode: 'number' }).notNull(),
  checksum_sha256: text('checksum_sha256').notNull(),
  original_name: text('original_name'),
  purpose: text('purpose', { enum: mediaPurposes }).notNull().default('media'),
  created_at: timestamp('created_at', { withTimezone: true }).notNull().defaultNow()
}, (t) => [
  check('media_purpose_check', inList(t.purpose, mediaPurposes)),
  check('media_size_bytes_check', sql`${t.size_bytes} >= 0`),
  // "My files", newest first.
  index('media_user_id_created_at_idx').on(t.user_id, t.created_at.desc().nullsFirst())
])

export type Media = typeof media.$inferSelect
export type NewMedia = typeof media.$inferInsert
