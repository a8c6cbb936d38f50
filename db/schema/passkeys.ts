import { bigint, boolean, check, index, pgTable, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core'
import { inList } from './checks.ts'
import { user } from './users.ts'

const timestamptz = (name: string) => timestamp(name, { withTimezone: true })

export const passkeyDeviceTypes = ['single_device', 'multi_device'] as const

/**
 * A WebAuthn credential (passkey) of an account (issue 20). `credential_id` and
 * `public_key` (COSE) are base64url, as the authenticator made them; `counter` is
 * the authenticator's signature counter (0 = it keeps none), refused when it does
 * not increase; `backup_eligible` / `backed_up` are the BE and BS flags (a synced,
 * multi-device passkey). `user_handle` is the WebAuthn user.id the account's
 * passkeys were made with (base64url); a discoverable sign-in answers it.
 */
export const passkey = pgTable('passkey', {
  passkey_id: uuid('passkey_id').primaryKey().defaultRandom(),
  user_id: uuid('user_id').notNull().references(() => user.user_id, { onDelete: 'cascade' }),
  credential_id: text('credential_id').notNull(),
  public_key: text('public_key').notNull(),
  counter: bigint('counter', { mode: 'number' }).notNull().default(0),
  user_handle: text('user_handle').notNull(),
  name: text('name').notNull(),
  transports: text('transports').array().notNull(),
  device_type: text('device_type', { enum: passkeyDeviceTypes }).notNull(),
  backup_eligible: boolean('backup_eligible').notNull().default(false),
  backed_up: boolean('backed_up').notNull().default(false),
  aaguid: text('aaguid'),
  created_at: timestamptz('created_at').notNull().defaultNow(),
  last_used_at: timestamptz('last_used_at')
}, (t) => [
  uniqueIndex('passkey_credential_id_key').on(t.credential_id),
  index('passkey_user_id_idx').on(t.user_id),
  check('passkey_device_type_check', inList(t.device_type, passkeyDeviceTypes))
])

export type Passkey = typeof passkey.$inferSelect
