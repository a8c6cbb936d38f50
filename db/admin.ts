import { and, eq, sql } from 'drizzle-orm'
import { hashPassword, type HashParams } from '../workers/password.ts'
import type { Database } from './client.ts'
import { SUPER_ADMIN_GROUP } from './defaults.ts'
import { group, user, userGroup, type User } from './schema/index.ts'

export type BootstrapOutcome = 'created' | 'exists' | 'promoted'
export type SuperAdminOutcome = 'created' | 'promoted' | 'already'

export interface SuperAdminResult {
  outcome: SuperAdminOutcome
  userId: string
  /** The promoted account was inactive and has been reactivated. */
  reactivated: boolean
}

export class SuperAdminError extends Error {
  constructor (readonly code: 'GROUP_MISSING' | 'PASSWORD_REQUIRED' | 'ACCOUNT_DELETED', message: string) {
    super(message)
    this.name = 'SuperAdminError'
  }
}

export interface SuperAdminSpec {
  email: string
  /** Needed only when no account has this email yet. */
  password?: string
  /** Argon2id parameters; the app's config (ARGON2_*) when called from it. */
  hashParams?: HashParams
}

// Serializes concurrent bootstraps (several instances starting together) so
// only one creates the account: sha256("fastify-auth-backend:bootstrap-admin")
// truncated to a signed int64, like the migration lock key.
const ADMIN_LOCK_KEY = '1484330219983249147'

export const normalizeEmail = (email: string) => email.trim().toLowerCase()

/** The account with this email, compared case-insensitively like the login does. */
export async function findUserByEmail (db: Database, email: string): Promise<User | undefined> {
  const [row] = await db.select().from(user).where(sql`lower(${user.email}) = ${normalizeEmail(email)}`).limit(1)
  return row
}

/** Whether an active account belongs to the active super_admin group (the one SR-27 keeps alive). */
export async function hasActiveSuperAdmin (db: Database): Promise<boolean> {
  const rows = await db.select({ id: user.user_id })
    .from(user)
    .innerJoin(userGroup, eq(userGroup.user_id, user.user_id))
    .innerJoin(group, eq(group.group_id, userGroup.group_id))
    .where(and(eq(group.codename, SUPER_ADMIN_GROUP), eq(group.is_active, true), eq(user.is_active, true), eq(user.status, 'active')))
    .limit(1)
  return rows.length > 0
}

/**
 * Makes the account with this email an active super admin: creates it (with
 * the password, Argon2id) when there is none, otherwise adds it to super_admin
 * and reactivates it. A deleted account is refused rather than resurrected.
 * Its permission version is bumped so tokens embedding the old permissions
 * are re-checked (SR-22).
 */
export async function createOrPromoteSuperAdmin (db: Database, spec: SuperAdminSpec): Promise<SuperAdminResult> {
  const email = normalizeEmail(spec.email)
  // Hash outside the transaction: it takes tens of milliseconds and needs no lock.
  const passwordHash = spec.password !== undefined && (await findUserByEmail(db, email)) === undefined
    ? await hashPassword(spec.password, spec.hashParams)
    : undefined
  return db.transaction(async (tx) => {
    await tx.execute(sql`select pg_advisory_xact_lock(${ADMIN_LOCK_KEY}::bigint)`)
    return promoteOrCreate(tx, email, spec.password, passwordHash)
  })
}

/**
 * The first super admin from BOOTSTRAP_ADMIN_EMAIL/PASSWORD: does nothing when
 * an active super admin exists ('exists'), else creates the account
 * ('created') or promotes the existing one with that email ('promoted').
 * Idempotent and safe when several instances start at once.
 */
export async function ensureBootstrapAdmin (db: Database, spec: { email: string, password: string, hashParams?: HashParams }): Promise<BootstrapOutcome> {
  if (await hasActiveSuperAdmin(db)) return 'exists'
  const email = normalizeEmail(spec.email)
  const passwordHash = (await findUserByEmail(db, email)) === undefined ? await hashPassword(spec.password, spec.hashParams) : undefined
  return db.transaction(async (tx) => {
    await tx.execute(sql`select pg_advisory_xact_lock(${ADMIN_LOCK_KEY}::bigint)`)
    // Another instance may have finished the bootstrap while we waited for the lock.
    if (await hasActiveSuperAdmin(tx)) return 'exists'
    const result = await promoteOrCreate(tx, email, spec.password, passwordHash)
    return result.outcome === 'created' ? 'created' : 'promoted'
  })
}

async function promoteOrCreate (tx: Database, email: string, password: string | undefined, passwordHash: string | undefined): Promise<SuperAdminResult> {
  const [superAdmins] = await tx.select({ id: group.group_id }).from(group).where(eq(group.codename, SUPER_ADMIN_GROUP))
  if (!superAdmins) throw new SuperAdminError('GROUP_MISSING', `The ${SUPER_ADMIN_GROUP} group does not exist; run the migrations and the seed first`)
  const now = new Date()
  const existing = await findUserByEmail(tx, email)

  if (!existing) {
    if (password === undefined) throw new SuperAdminError('PASSWORD_REQUIRED', `No account has the email ${email}; a password is needed to create it`)
    const hash = passwordHash ?? await hashPassword(password)
    const [created] = await tx.insert(user).values({
      email,
      password: hash,
      auth_type: 'email',
      user_type: 'super_admin',
      is_email_verified: true,
      password_changed_at: now,
      created_at: now,
      last_updated: now
    }).returning({ id: user.user_id })
    await tx.insert(userGroup).values({ user_id: created.id, group_id: superAdmins.id, created_at: now })
    return { outcome: 'created', userId: created.id, reactivated: false }
  }

  if (existing.status === 'deleted') {
    throw new SuperAdminError('ACCOUNT_DELETED', `The account with the email ${email} was deleted; it cannot be made a super admin`)
  }
  const active = existing.is_active && existing.status === 'active'
  const joined = await tx.insert(userGroup).values({ user_id: existing.user_id, group_id: superAdmins.id, created_at: now })
    .onConflictDoNothing().returning({ id: userGroup.user_id })
  if (joined.length === 0 && active) return { outcome: 'already', userId: existing.user_id, reactivated: false }
  await tx.update(user).set({
    user_type: 'super_admin',
    is_active: true,
    status: 'active',
    deactivated_at: null,
    permission_version: sql`${user.permission_version} + 1`,
    last_updated: now
  }).where(eq(user.user_id, existing.user_id))
  return { outcome: 'promoted', userId: existing.user_id, reactivated: !active }
}
