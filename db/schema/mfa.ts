import { sql } from 'drizzle-orm'
import { bigint, check, index, pgTable, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core'
import { inList } from './checks.ts'
import { user } from './users.ts'

const timestamptz = (name: string) => timestamp(name, { withTimezone: true })

export const mfaFactorTypes = ['totp'] as const
export const mfaFactorStatuses = ['pending', 'verified'] as const

/**
 * A second factor of an account (TOTP, RFC 6238). `secret` is the shared secret
 * encrypted with AES-256-GCM under a key derived from the server secret
 * (plugins/app/auth/mfa/secrets.ts); it is never returned after enrolment.
 * `last_used_step` is the time step of the last accepted code: a code of that step
 * or an earlier one is refused (replay).
 */
export const mfaFactor = pgTable('mfa_factor', {
  factor_id: uuid('factor_id').primaryKey().defaultRandom(),
  user_id: uuid('user_id').notNull().references(() => user.user_id, { onDelete: 'cascade' }),
  type: text('type', { enum: mfaFactorTypes }).notNull().default('totp'),
  status: text('status', { enum: mfaFactorStatuses }).notNull().default('pending'),
  secret: text('secret').notNull(),
  last_used_step: bigint('last_used_step', { mode: 'number' }),
  created_at: timestamptz('created_at').notNull().defaultNow(),
  verified_at: timestamptz('verified_at'),
  last_used_at: timestamptz('last_used_at')
}, (t) => [
  check('mfa_factor_type_check', inList(t.type, mfaFactorTypes)),
  check('mfa_factor_status_check', inList(t.status, mfaFactorStatuses)),
  index('mfa_factor_user_id_idx').on(t.user_id)
])

/** Single-use recovery codes, stored as HMAC-SHA-256 digests; `used_at` set when spent. */
export const mfaRecoveryCode = pgTable('mfa_recovery_code', {
  code_id: uuid('code_id').primaryKey().defaultRandom(),
  user_id: uuid('user_id').notNull().references(() => user.user_id, { onDelete: 'cascade' }),
  code_hash: text('code_hash').notNull(),
  created_at: timestamptz('created_at').notNull().defaultNow(),
  used_at: timestamptz('used_at')
}, (t) => [
  uniqueIndex('mfa_recovery_code_user_hash_key').on(t.user_id, t.code_hash),
  index('mfa_recovery_code_unused_idx').on(t.user_id).where(sql`used_at is null`)
])

export type MfaFactor = typeof mfaFactor.$inferSelect
export type MfaRecoveryCode = typeof mfaRecoveryCode.$inferSelect
