import { sql } from 'drizzle-orm'
import { bigint, check, index, integer, pgTable, smallint, text, timestamp, uuid } from 'drizzle-orm/pg-core'
import { inList } from './checks.ts'
import { user } from './users.ts'
import { authMethods } from '../../domain/enums.ts'

// The value list is defined in domain/enums.ts (schemas/ states it too); re-exported with its table.
export { authMethods }
export type { AuthMethod } from '../../domain/enums.ts'

const timestamptz = (name: string) => timestamp(name, { withTimezone: true })

/**
 * One row per login (device). This row, not the cache, decides whether tokens
 * carrying its id are still valid, so revocations survive a cache flush.
 */
export const session = pgTable('session', {
  session_id: uuid('session_id').primaryKey().defaultRandom(),
  user_id: uuid('user_id').notNull().references(() => user.user_id, { onDelete: 'cascade' }),
  // Per-session salt of the refresh token MAC: a leaked server secret alone
  // cannot mint refresh tokens for existing sessions.
  refresh_secret: text('refresh_secret').notNull(),
  refresh_generation: integer('refresh_generation').notNull().default(0),
  rotated_at: timestamptz('rotated_at'),
  auth_method: text('auth_method', { enum: authMethods }).notNull(),
  // The session's assurance: authentication methods (RFC 8176 names, space-separated) and level (1 or 2).
  amr: text('amr').notNull().default('pwd'),
  aal: smallint('aal').notNull().default(1),
  // The name the client gave at login (device_name), if any.
  device_name: text('device_name'),
  // The browser and system parsed from the user agent ("Chrome on macOS"): the new-device check compares it.
  device: text('device'),
  ip_address: text('ip_address'),
  user_agent: text('user_agent'),
  created_at: timestamptz('created_at').notNull().defaultNow(),
  last_used_at: timestamptz('last_used_at').notNull().defaultNow(),
  expires_at: timestamptz('expires_at').notNull(),
  revoked_at: timestamptz('revoked_at'),
  revoked_reason: text('revoked_reason')
}, (t) => [
  check('session_auth_method_check', inList(t.auth_method, authMethods)),
  check('session_refresh_generation_check', sql`${t.refresh_generation} >= 0`),
  check('session_aal_check', sql`${t.aal} in (1, 2)`),
  // "Revoke all my other sessions" and the sessions list only look at live rows.
  index('session_user_id_active_idx').on(t.user_id).where(sql`revoked_at is null`)
])

export type Session = typeof session.$inferSelect
export type NewSession = typeof session.$inferInsert

/**
 * One row (id 1): the generation of the shared auth-state cache (`s:`/`u:` keys).
 * Cache entries carry the generation they were written under; an entry older than
 * this is not trusted. It is bumped when a revocation could not be written to the
 * cache, and when an instance finds a Redis server other than `redis_run_id` (a
 * restart, possibly from an older snapshot), so such entries can never come back.
 */
export const authCacheState = pgTable('auth_cache_state', {
  id: smallint('id').primaryKey(),
  generation: bigint('generation', { mode: 'number' }).notNull().default(0),
  redis_run_id: text('redis_run_id'),
  updated_at: timestamptz('updated_at').notNull().defaultNow()
}, (t) => [
  check('auth_cache_state_single_row_check', sql`${t.id} = 1`)
])
