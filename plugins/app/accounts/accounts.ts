import fp from 'fastify-plugin'
import type { Caller } from '../auth/caller.ts'
import { eq, getTableColumns, sql } from 'drizzle-orm'
import { group, session, user, userGroup, type User } from '../../../db/schema/index.ts'
import { DEFAULT_USER_GROUP } from '../../../db/defaults.ts'
import { AppError, type ErrorCode } from '../../../schemas/errors.ts'
import { statementCache, type Database } from '../../../db/client.ts'

/**
 * Account writes of the self-service flows (sign-up, passwords, email and phone
 * changes) and the re-authentication rule of SR-23. Every write bumps
 * `last_updated` with the app clock; callers refresh the cached user state
 * (`sessions.refreshUserState`) afterwards. Uniqueness is enforced by the
 * database; a violation becomes EMAIL_TAKEN, PHONE_TAKEN or USER_NAME_TAKEN.
 */
export interface SignUpInput {
  email?: string
  phone_number?: string
  passwordHash: string
  user_name?: string
  first_name?: string
  last_name?: string
  language: string
  timezone?: string
  country?: string
}

export interface Availability { email?: boolean, phone_number?: boolean, user_name?: boolean }

export interface AccountService {
  /** Creates the account with its verified channel, in the default group, in one transaction. */
  signUp: (input: SignUpInput) => Promise<User>
  /** Sets a new password hash and `password_changed_at`. */
  setPassword: (userId: string, hash: string) => Promise<User>
  markVerified: (userId: string, channel: 'email' | 'phone') => Promise<User>
  changeEmail: (userId: string, email: string) => Promise<User>
  changePhone: (userId: string, phone: string) => Promise<User>
  /** Which of the given identifiers no account uses (emails and user names case-insensitively). */
  availability: (query: { email?: string, phone_number?: string, user_name?: string }) => Promise<Availability>
  /**
   * SR-23: a sensitive change needs a session created within REAUTH_WINDOW_MINUTES,
   * or the current password (checked with the login lockout). Returns the account.
   */
  assertRecentAuth: (caller: Caller, currentPassword?: string) => Promise<User>
  /** Checks the current password (lockout shared with login); throws AUTH_CURRENT_PASSWORD_INVALID. */
  verifyCurrentPassword: (caller: Caller, account: User, password: string) => Promise<void>
}

declare module 'fastify' {
  interface FastifyInstance { accounts: AccountService }
}

const constraintCodes: Record<string, ErrorCode> = {
  user_email_lower_key: 'EMAIL_TAKEN',
  user_phone_number_key: 'PHONE_TAKEN',
  user_user_name_lower_key: 'USER_NAME_TAKEN'
}

/** The error code of a unique violation on a user identifier (postgres.js and PGlite name the constraint differently). */
export function identifierConflict (error: unknown): ErrorCode | undefined {
  for (let e = error as { code?: string, constraint_name?: string, constraint?: string, cause?: unknown } | undefined; e; e = e.cause as typeof e) {
    if (e.code === '23505') return constraintCodes[e.constraint_name ?? e.constraint ?? ''] ?? 'CONFLICT'
  }
  return undefined
}

const userColumns = getTableColumns(user)
type UserUpdate = ReturnType<typeof prepareUserUpdate>
const userUpdates = new WeakMap<Database, (key: string, build: (n: number) => UserUpdate) => UserUpdate>()

function prepareUserUpdate (db: Database, columns: readonly string[], id: number) {
  const set = Object.fromEntries(columns.map((name) => [name, sql`${sql.placeholder(name)}`]))
  return db.update(user).set(set).where(eq(user.user_id, sql.placeholder('user_id'))).returning().prepare(`user_update_${id}`)
}

/**
 * Writes `values` to one user row, stamping last_updated, and returns the row; a
 * taken email, phone or user name is its AppError. The statement of each set of
 * columns is built and prepared once per database handle (drizzle spent ~100 µs
 * building an UPDATE ... RETURNING of every column per call); values are converted
 * as drizzle would (`mapToDriverValue`) and bound.
 */
export async function updateUserRow (db: Database, userId: string, values: Partial<typeof user.$inferInsert>, at: Date): Promise<User> {
  const changes = Object.entries({ ...values, last_updated: at }).filter(([, value]) => value !== undefined)
  const columns = changes.map(([name]) => name).sort()
  let statement = userUpdates.get(db)
  if (!statement) userUpdates.set(db, statement = statementCache())
  const update = statement(columns.join(','), (n) => prepareUserUpdate(db, columns, n))
  const params: Record<string, unknown> = { user_id: userId }
  for (const [name, value] of changes) params[name] = value === null ? null : userColumns[name as keyof typeof userColumns].mapToDriverValue(value)
  try {
    const [row] = await update.execute(params)
    if (!row) throw new AppError('USER_NOT_FOUND')
    return row
  } catch (error) {
    const conflict = identifierConflict(error)
    if (conflict) throw new AppError(conflict, { cause: error })
    throw error
  }
}

/** A valid IANA time zone name? */
export function isTimeZone (value: string): boolean {
  try {
    // eslint-disable-next-line no-new
    new Intl.DateTimeFormat('en', { timeZone: value })
    return true
  } catch {
    return false
  }
}

export default fp(async (fastify) => {
  const { db, config } = fastify
  const now = () => new Date(fastify.now())

  const update = (userId: string, values: Partial<typeof user.$inferInsert>) => updateUserRow(db, userId, values, now())

  const service: AccountService = {
    async signUp (input) {
      const at = now()
      try {
        return await db.transaction(async (tx) => {
          const [created] = await tx.insert(user).values({
            email: input.email ?? null,
            phone_number: input.phone_number ?? null,
            user_name: input.user_name ?? null,
            password: input.passwordHash,
            password_changed_at: at,
            auth_type: input.email ? 'email' : 'phone',
            user_type: 'user',
            first_name: input.first_name ?? null,
            last_name: input.last_name ?? null,
            language: input.language,
            ...(input.timezone ? { timezone: input.timezone } : {}),
            country: input.country ?? null,
            is_email_verified: input.email !== undefined,
            is_phone_verified: input.phone_number !== undefined,
            created_at: at,
            last_updated: at
          }).returning()
          const [defaultGroup] = await tx.select({ group_id: group.group_id }).from(group).where(eq(group.codename, DEFAULT_USER_GROUP))
          if (!defaultGroup) throw new Error(`the default group "${DEFAULT_USER_GROUP}" is missing; run the seed`)
          await tx.insert(userGroup).values({ user_id: created.user_id, group_id: defaultGroup.group_id, created_at: at })
          return created
        })
      } catch (error) {
        const conflict = identifierConflict(error)
        if (conflict) throw new AppError(conflict, { cause: error })
        throw error
      }
    },

    setPassword: (userId, hash) => update(userId, { password: hash, password_changed_at: now() }),

    markVerified: (userId, channel) => update(userId, channel === 'email' ? { is_email_verified: true } : { is_phone_verified: true }),

    changeEmail: (userId, email) => update(userId, { email, is_email_verified: true }),

    changePhone: (userId, phone) => update(userId, { phone_number: phone, is_phone_verified: true }),

    async availability (query) {
      const [emailRows, phoneRows, nameRows] = await Promise.all([
        query.email === undefined ? [] : db.select({ id: user.user_id }).from(user).where(sql`lower(${user.email}) = ${query.email.toLowerCase()}`).limit(1),
        query.phone_number === undefined ? [] : db.select({ id: user.user_id }).from(user).where(eq(user.phone_number, query.phone_number)).limit(1),
        query.user_name === undefined ? [] : db.select({ id: user.user_id }).from(user).where(sql`lower(${user.user_name}) = ${query.user_name.toLowerCase()}`).limit(1)
      ])
      return {
        ...(query.email !== undefined ? { email: emailRows.length === 0 } : {}),
        ...(query.phone_number !== undefined ? { phone_number: phoneRows.length === 0 } : {}),
        ...(query.user_name !== undefined ? { user_name: nameRows.length === 0 } : {})
      }
    },

    async verifyCurrentPassword (caller, account, password) {
      const lockKey = `user:${account.user_id}`
      if (!account.password) throw new AppError('PASSWORD_NOT_SET')
      // Counted before the hash, like a login (SR-9): the account's one lockout.
      const { lockedForSeconds } = await fastify.throttle.reserveAttempt(lockKey)
      const { ok } = await fastify.passwords.verify(account.password, password)
      if (!ok) {
        await fastify.audit(caller, { action: 'reauth_failed', level: 'warning', targetUserId: account.user_id, metadata: { locked_for_seconds: lockedForSeconds } })
        throw new AppError('AUTH_CURRENT_PASSWORD_INVALID')
      }
      await fastify.throttle.clearFailures(lockKey)
    },

    async assertRecentAuth (caller, currentPassword) {
      const auth = caller.actor!
      const account = await fastify.users.findById(auth.userId)
      if (!account) throw new AppError('AUTH_SESSION_REVOKED')
      if (currentPassword !== undefined) {
        await service.verifyCurrentPassword(caller, account, currentPassword)
        return account
      }
      // The session row's creation is the login; refreshing tokens does not make a login fresh.
      const [row] = await db.select({ created_at: session.created_at }).from(session).where(eq(session.session_id, auth.sessionId))
      const fresh = row !== undefined && fastify.now() - row.created_at.getTime() <= config.REAUTH_WINDOW_MINUTES * 60_000
      if (!fresh) throw new AppError('AUTH_REAUTH_REQUIRED')
      return account
    }
  }
  fastify.decorate('accounts', service)
}, { name: 'accounts', dependencies: ['db', 'users', 'passwords', 'throttle', 'activity'] })
