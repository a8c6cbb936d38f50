import fp from 'fastify-plugin'
import { and, eq, getTableColumns, inArray, sql } from 'drizzle-orm'
import { user, type NewUser, type User } from '../../../db/schema/index.ts'
import { statementCache, type Database } from '../../../db/client.ts'
import { pgError, PG_UNIQUE_VIOLATION } from '../../../db/errors.ts'
import { AppError, type ErrorCode } from '../../../schemas/errors.ts'
import type { Static } from '@sinclair/typebox'
import type { UserSchema } from '../../../schemas/user.ts'
import { normalizeIdentifier, type IdentifierKind } from './contact.ts'

/**
 * The owner of the `user` table: every write to it goes through this repository.
 * Writing methods take an optional transaction (`tx`); without one they run on
 * their own. Every write but `recordLogin` stamps `last_updated` with the app
 * clock; callers refresh the cached user state (`sessions.refreshUserState`)
 * afterwards. A taken email, phone or user name is EMAIL_TAKEN, PHONE_TAKEN or
 * USER_NAME_TAKEN (the database enforces uniqueness).
 */
export type PublicUser = Static<typeof UserSchema>

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
  /** The row locked for the rest of the transaction; undefined when there is none. */
  lock: (tx: Database, userId: string) => Promise<User | undefined>
  /** Inserts an account (created_at and last_updated are the caller's). */
  create: (values: NewUser, tx?: Database) => Promise<User>
  /** Writes `values` to one row, stamping last_updated; USER_NOT_FOUND when there is no row. */
  update: (userId: string, values: Partial<NewUser>, tx?: Database) => Promise<User>
  setPasswordHash: (userId: string, hash: string, tx?: Database) => Promise<void>
  /** last_login only (not last_updated: the profile snapshots in session tokens stay current). */
  recordLogin: (userId: string) => Promise<User>
  /** Clears the profile picture if it is still `key`; whether it was. */
  clearProfilePicture: (userId: string, key: string, tx?: Database) => Promise<boolean>
  /** SR-22: tokens that embed permissions are re-checked once their version moves. */
  bumpPermissionVersion: (userIds: readonly string[], tx?: Database) => Promise<void>
  /** Clears every personal field and marks the row deleted (SR-38), keeping id, type and creation time. */
  anonymise: (userId: string, tx?: Database) => Promise<void>
}

declare module 'fastify' {
  interface FastifyInstance { users: UserRepository }
}

const constraintCodes: Record<string, ErrorCode> = {
  user_email_lower_key: 'EMAIL_TAKEN',
  user_phone_number_key: 'PHONE_TAKEN',
  user_user_name_lower_key: 'USER_NAME_TAKEN'
}

/** The error code of a unique violation on a user identifier; undefined for any other error. */
export function identifierConflict (error: unknown): ErrorCode | undefined {
  const info = pgError(error)
  if (info?.code !== PG_UNIQUE_VIOLATION) return undefined
  return constraintCodes[info.constraint ?? ''] ?? 'CONFLICT'
}

/** Runs a write, turning a taken identifier into its AppError. */
async function writing<T> (write: () => Promise<T>): Promise<T> {
  try {
    return await write()
  } catch (error) {
    const conflict = identifierConflict(error)
    if (conflict) throw new AppError(conflict, { cause: error })
    throw error
  }
}

const userColumns = getTableColumns(user)

function prepareUserUpdate (db: Database, columns: readonly string[], id: number) {
  const set = Object.fromEntries(columns.map((name) => [name, sql`${sql.placeholder(name)}`]))
  return db.update(user).set(set).where(eq(user.user_id, sql.placeholder('user_id'))).returning().prepare(`user_update_${id}`)
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
  const recordLogin = db.update(user).set({ last_login: sql`${sql.placeholder('at')}::timestamptz` })
    .where(eq(user.user_id, sql.placeholder('userId'))).returning().prepare('user_record_login')
  // One UPDATE ... RETURNING per set of columns, built and prepared on first use
  // (docs/performance.md); values are converted as drizzle would (`mapToDriverValue`) and bound.
  const updates = statementCache<ReturnType<typeof prepareUserUpdate>>()
  const now = () => new Date(fastify.now())

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

    async lock (tx, userId) {
      const [row] = await tx.select().from(user).where(eq(user.user_id, userId)).for('update')
      return row
    },

    async create (values, tx = db) {
      const [row] = await writing(() => tx.insert(user).values(values).returning())
      return row
    },

    async update (userId, values, tx) {
      const changes = Object.entries({ ...values, last_updated: now() }).filter(([, value]) => value !== undefined)
      const rows = await writing(async () => {
        if (tx) return await tx.update(user).set(Object.fromEntries(changes)).where(eq(user.user_id, userId)).returning()
        const columns = changes.map(([name]) => name).sort()
        const statement = updates(columns.join(','), (n) => prepareUserUpdate(db, columns, n))
        const params: Record<string, unknown> = { user_id: userId }
        for (const [name, value] of changes) params[name] = value === null ? null : userColumns[name as keyof typeof userColumns].mapToDriverValue(value)
        return await statement.execute(params)
      })
      if (!rows[0]) throw new AppError('USER_NOT_FOUND')
      return rows[0]
    },

    async setPasswordHash (userId, hash, tx = db) {
      await tx.update(user).set({ password: hash, last_updated: now() }).where(eq(user.user_id, userId))
    },

    async recordLogin (userId) {
      const [row] = await recordLogin.execute({ userId, at: now().toISOString() })
      return row
    },

    async clearProfilePicture (userId, key, tx = db) {
      const cleared = await tx.update(user)
        .set({ profile_picture_url: null, profile_picture_key: null, last_updated: now() })
        .where(and(eq(user.user_id, userId), eq(user.profile_picture_key, key)))
        .returning({ id: user.user_id })
      return cleared.length > 0
    },

    async bumpPermissionVersion (userIds, tx = db) {
      if (userIds.length === 0) return
      await tx.update(user).set({ permission_version: sql`${user.permission_version} + 1` }).where(inArray(user.user_id, [...userIds]))
    },

    async anonymise (userId, tx = db) {
      const at = now()
      await tx.update(user).set({
        email: null,
        phone_number: null,
        user_name: null,
        password: null,
        first_name: null,
        last_name: null,
        bio: null,
        country: null,
        gender: null,
        dob: null,
        profile_picture_url: null,
        profile_picture_key: null,
        language: 'en',
        theme: 'system',
        timezone: 'UTC',
        profile_accessibility: 'private',
        is_email_verified: false,
        is_phone_verified: false,
        is_active: false,
        status: 'deleted',
        password_changed_at: null,
        last_login: null,
        deactivated_at: at,
        deleted_at: at,
        permission_version: sql`${user.permission_version} + 1`,
        last_updated: at
      }).where(eq(user.user_id, userId))
    }
  }
  fastify.decorate('users', repository)
}, { name: 'users', dependencies: ['db'] })
