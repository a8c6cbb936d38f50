import { sql } from 'drizzle-orm'
import { check, index, jsonb, pgTable, text, timestamp, uniqueIndex } from 'drizzle-orm/pg-core'

const timestamptz = (name: string) => timestamp(name, { withTimezone: true })

/** The asymmetric algorithms a signing key can have (HS256 uses the server secret, never a row). */
export const signingKeyAlgorithms = ['EdDSA', 'ES256', 'RS256'] as const
export type SigningKeyAlgorithm = typeof signingKeyAlgorithms[number]

/**
 * The keys access and session tokens are signed with (issue 20), shared by every
 * instance. Written only by plugins/app/auth/signing-keys.ts.
 *
 * - `public_jwk` is what GET /.well-known/jwks.json publishes (with `kid`, `alg`, `use`).
 * - `private_key` is the PKCS#8 key encrypted with AES-256-GCM under a key derived with
 *   HKDF from JWT_SECRET_KEY, the kid as associated data.
 * - The current key is the one with `retired_at` null (at most one: the partial unique
 *   index). A retired key stays published until `publish_until`, when the last token it
 *   signed has expired, and is deleted after.
 */
export const signingKey = pgTable('signing_key', {
  kid: text('kid').primaryKey(),
  alg: text('alg', { enum: signingKeyAlgorithms }).notNull(),
  public_jwk: jsonb('public_jwk').$type<Record<string, unknown>>().notNull(),
  private_key: text('private_key').notNull(),
  created_at: timestamptz('created_at').notNull().defaultNow(),
  retired_at: timestamptz('retired_at'),
  publish_until: timestamptz('publish_until')
}, (t) => [
  check('signing_key_alg_check', sql`${t.alg} in ('EdDSA', 'ES256', 'RS256')`),
  check('signing_key_retired_check', sql`(${t.retired_at} is null) = (${t.publish_until} is null)`),
  uniqueIndex('signing_key_one_current_key').on(sql`(${t.retired_at} is null)`).where(sql`${t.retired_at} is null`),
  index('signing_key_publish_until_idx').on(t.publish_until)
])

export type SigningKey = typeof signingKey.$inferSelect
