import fp from 'fastify-plugin'
import { eq, sql } from 'drizzle-orm'
import { parsePhoneNumberFromString } from 'libphonenumber-js/max'
import { user, type User } from '../../../db/schema/index.ts'
import type { Static } from '@sinclair/typebox'
import type { UserSchema } from '../../../schemas/user.ts'

/** Data access for users: lookups by identifier, the auth state of a user, login bookkeeping. */
export type PublicUser = Static<typeof UserSchema>

export type IdentifierKind = 'email' | 'phone' | 'user_name'

export interface UserAuthState {
  active: boolean
  permissionVersion: number
  lastUpdated: number
  superAdmin: boolean
  permissions: string[]
  language: string
  /** Member of an active require_mfa group without a verified factor. */
  mfaEnrolmentRequired: boolean
}

export interface UserRepository {
  findById: (userId: string) => Promise<User | undefined>
  /** Email (case-insensitive), phone (E.164) or user name (case-insensitive). */
  findByIdentifier: (identifier: string) => Promise<User | undefined>
  authState: (userId: string) => Promise<UserAuthState | undefined>
  setPasswordHash: (userId: string, hash: string) => Promise<void>
  recordLogin: (userId: string) => Promise<User>
}

declare module 'fastify' {
  interface FastifyInstance { users: UserRepository }
}

/** Lower-cased email, E.164 phone, or trimmed user name; `undefined` when it cannot be one. */
export function normalizeIdentifier (raw: string): { kind: IdentifierKind, value: string } | undefined {
  const value = raw.trim()
  if (value.length === 0 || value.length > 320) return undefined
  if (value.includes('@')) return { kind: 'email', value: value.toLowerCase() }
  if (/^\+?[\d\s().-]{6,}$/.test(value)) {
    const phone = normalizePhone(value)
    return phone ? { kind: 'phone', value: phone } : undefined
  }
  return { kind: 'user_name', value }
}

/** E.164 or undefined; numbers must carry their country code (+...). */
export function normalizePhone (raw: string): string | undefined {
  const parsed = parsePhoneNumberFromString(raw.startsWith('+') ? raw : `+${raw}`)
  return parsed?.isValid() ? parsed.number : undefined
}

const iso = (d: Date | null) => (d ? d.toISOString() : null)

/** The allow-listed view of a user row (UserSchema). */
export function toPublicUser (row: User): PublicUser {
  return {
    user_id: row.user_id,
    email: row.email,
    phone_number: row.phone_number,
    user_name: row.user_name,
    first_name: row.first_name,
    last_name: row.last_name,
    bio: row.bio,
    country: row.country,
    gender: row.gender,
    dob: row.dob ?? null,
    language: row.language,
    theme: row.theme,
    timezone: row.timezone,
    profile_accessibility: row.profile_accessibility,
    profile_picture_url: row.profile_picture_url,
    auth_type: row.auth_type,
    user_type: row.user_type,
    is_email_verified: row.is_email_verified,
    is_phone_verified: row.is_phone_verified,
    is_active: row.is_active,
    status: row.status,
    has_password: row.password !== null && row.password !== '',
    last_login: iso(row.last_login),
    created_at: row.created_at.toISOString(),
    last_updated: row.last_updated.toISOString()
  }
}

export default fp(async (fastify) => {
  const { db } = fastify

  // The hot lookups as prepared statements: drizzle builds their SQL once (not per
  // call) and PostgreSQL parses and plans them once per connection.
  const id = sql.placeholder('id')
  const value = sql.placeholder('value')
  const byId = db.select().from(user).where(eq(user.user_id, id)).limit(1).prepare('user_by_id')
  const byIdentifier: Record<IdentifierKind, typeof byId> = {
    email: db.select().from(user).where(sql`lower(${user.email}) = ${value}`).limit(1).prepare('user_by_email'),
    phone: db.select().from(user).where(eq(user.phone_number, value)).limit(1).prepare('user_by_phone'),
    user_name: db.select().from(user).where(sql`lower(${user.user_name}) = lower(${value})`).limit(1).prepare('user_by_user_name')
  }
  // The auth state in one query: the account's flags, the codenames its active groups
  // grant, and whether one of those groups is super_admin. (Written out with aliases:
  // drizzle leaves columns unqualified in a one-table select, which a correlated
  // subquery cannot use.)
  const activeGroups = sql.raw('"user_group" ug inner join "group" g on g.group_id = ug.group_id and g.is_active')
  const stateRow = db.select({
    is_active: user.is_active,
    status: user.status,
    permission_version: user.permission_version,
    last_updated: user.last_updated,
    language: user.language,
    permissions: sql<string[]>`coalesce((select jsonb_agg(distinct p.codename order by p.codename) from ${activeGroups}
      inner join "group_permission" gp on gp.group_id = g.group_id
      inner join "permission" p on p.permission_id = gp.permission_id
      where ug.user_id = "user"."user_id"), '[]'::jsonb)`,
    super_admin: sql<boolean>`exists(select 1 from ${activeGroups} where ug.user_id = "user"."user_id" and g.codename = 'super_admin')`,
    mfa_enrolment_required: sql<boolean>`(exists(select 1 from ${activeGroups} where ug.user_id = "user"."user_id" and g.require_mfa)
      and not exists(select 1 from "mfa_factor" f where f.user_id = "user"."user_id" and f.status = 'verified'))`
  }).from(user).where(eq(user.user_id, id)).prepare('user_state')
  // Every login: last_login only (not last_updated: the profile snapshots in session tokens stay current).
  const recordLogin = db.update(user).set({ last_login: sql`${sql.placeholder('at')}::timestamptz` })
    .where(eq(user.user_id, sql.placeholder('userId'))).returning().prepare('user_record_login')

  const repository: UserRepository = {
    async findById (userId) {
      const [row] = await byId.execute({ id: userId })
      return row
    },

    async findByIdentifier (identifier) {
      const normalized = normalizeIdentifier(identifier)
      if (!normalized) return undefined
      const [row] = await byIdentifier[normalized.kind].execute({ value: normalized.value })
      return row
    },

    async authState (userId) {
      const [row] = await stateRow.execute({ id: userId })
      if (!row) return undefined
      return {
        active: row.is_active && row.status === 'active',
        permissionVersion: row.permission_version,
        lastUpdated: row.last_updated.getTime(),
        superAdmin: row.super_admin,
        permissions: [...row.permissions].sort(),
        language: row.language,
        mfaEnrolmentRequired: row.mfa_enrolment_required
      }
    },

    async setPasswordHash (userId, hash) {
      await db.update(user).set({ password: hash, last_updated: new Date(fastify.now()) }).where(eq(user.user_id, userId))
    },

    async recordLogin (userId) {
      const [row] = await recordLogin.execute({ userId, at: new Date(fastify.now()).toISOString() })
      return row
    }
  }
  fastify.decorate('users', repository)
}, { name: 'users', dependencies: ['db'] })
