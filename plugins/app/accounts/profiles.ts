import fp from 'fastify-plugin'
import type { FastifyRequest } from 'fastify'
import { eq, sql } from 'drizzle-orm'
import { activityLog, media, profileAccessibilities, session, themes, user, userGroup, type Media, type NewUser, type User } from '../../../db/schema/index.ts'
import { isSupportedLanguage, languages } from '../../../i18n/index.ts'
import { AppError } from '../../../schemas/errors.ts'
import type { PublicProfileSchema } from '../../../schemas/user.ts'
import { hasPermissions } from '../auth/authenticate.ts'
import { isTimeZone, updateUserRow } from './accounts.ts'
import { toPublicUser, type PublicUser } from './users.ts'
import type { Static } from '@sinclair/typebox'

/**
 * Self-service profile and settings, another user's profile as the caller may
 * see it, and closing one's own account (deactivate, delete).
 *
 * Deleting anonymises in place rather than removing the row: in one transaction
 * every personal field is cleared (identifiers, names, bio, birth date, picture,
 * password, preferences), the sessions (with their IP addresses and user
 * agents) and group memberships are deleted, and the audit rows stay with
 * their actor nulled (SR-38, SR-43). The row keeps only its id, type, creation
 * time and status `deleted`, so statistics and audit targets stay consistent
 * and the email, phone number and user name are free again. Uploaded files are
 * removed from storage after the commit (storage is not transactional).
 */
export type PublicProfile = Static<typeof PublicProfileSchema>

/** SR-26: the only columns a user may change on their own profile; anything else is never copied. */
export const editableProfileFields = [
  'user_name', 'first_name', 'last_name', 'bio', 'country', 'gender', 'dob', 'language', 'theme', 'timezone', 'profile_accessibility'
] as const
export type EditableProfileField = typeof editableProfileFields[number]
export type ProfileChanges = Partial<Record<EditableProfileField, string | null>>

export type SettingField = 'profile_accessibility' | 'language' | 'theme' | 'timezone'

export interface SettingsView {
  language: string
  theme: string
  timezone: string
  profile_accessibility: string
  is_email_verified: boolean
  is_phone_verified: boolean
  has_password: boolean
  available: { languages: string[], themes: string[], profile_accessibility: string[] }
}

export interface AccountClosed {
  user_id: string
  status: 'inactive' | 'deleted'
  revoked_sessions: number
  files_deleted?: number
  files_pending?: number
}

export interface ProfileService {
  update: (request: FastifyRequest, changes: ProfileChanges) => Promise<PublicUser>
  setSetting: (request: FastifyRequest, field: SettingField, value: string) => Promise<SettingsView>
  settings: (userId: string) => Promise<SettingsView>
  /** Another user's profile: the whole account for yourself and holders of view_user, else the public part of a public, active profile. */
  view: (request: FastifyRequest, userId: string) => Promise<PublicUser | PublicProfile>
  deactivate: (request: FastifyRequest, reason?: string) => Promise<AccountClosed>
  remove: (request: FastifyRequest, currentPassword?: string) => Promise<AccountClosed>
}

declare module 'fastify' {
  interface FastifyInstance { profiles: ProfileService }
}

const invalid = (field: string, message: string) => new AppError('VALIDATION_ERROR', { details: [{ field: `body/${field}`, message }] })

const knownZones = new Map(Intl.supportedValuesOf('timeZone').map((z) => [z.toLowerCase(), z]))

/** An IANA zone with its canonical spelling ("europe/paris" → "Europe/Paris"), or a validation error. */
export function canonicalTimeZone (value: string, field = 'timezone'): string {
  if (value.toUpperCase() === 'UTC') return 'UTC'
  // The shape check keeps out what some ICU versions also accept but is not an IANA name (offsets like +05:00).
  if (!/^[A-Za-z][A-Za-z0-9_+-]*(\/[A-Za-z0-9_+-]+)*$/.test(value) || !isTimeZone(value)) throw invalid(field, 'must be an IANA time zone name, e.g. Europe/Paris')
  return knownZones.get(value.toLowerCase()) ?? value
}

const regionNames = new Intl.DisplayNames(['en'], { type: 'region', fallback: 'none' })
// Codes ICU names that are not countries (unions, pseudo-regions).
const notCountries = new Set(['EU', 'EZ', 'UN', 'QO', 'XA', 'XB', 'ZZ'])

export function canonicalCountry (value: string): string {
  const code = value.toUpperCase()
  if (!/^[A-Z]{2}$/.test(code) || notCountries.has(code) || regionNames.of(code) === undefined) throw invalid('country', 'must be an ISO 3166-1 alpha-2 country code')
  return code
}

function checkDateOfBirth (value: string, today: Date): string {
  const date = new Date(`${value}T00:00:00Z`)
  // format: 'date' accepts 2023-02-30 on some validators; the round trip catches it.
  if (Number.isNaN(date.getTime()) || date.toISOString().slice(0, 10) !== value) throw invalid('dob', 'must be a real date')
  if (value < '1900-01-01' || date.getTime() > today.getTime()) throw invalid('dob', 'must be in the past (after 1900)')
  return value
}

function publicProfile (row: User): PublicProfile {
  return {
    user_id: row.user_id,
    user_name: row.user_name,
    first_name: row.first_name,
    last_name: row.last_name,
    bio: row.bio,
    country: row.country,
    profile_picture_url: row.profile_picture_url,
    profile_accessibility: row.profile_accessibility
  }
}

function settingsOf (row: User): SettingsView {
  return {
    language: row.language,
    theme: row.theme,
    timezone: row.timezone,
    profile_accessibility: row.profile_accessibility,
    is_email_verified: row.is_email_verified,
    is_phone_verified: row.is_phone_verified,
    has_password: row.password !== null && row.password !== '',
    available: { languages: [...languages], themes: [...themes], profile_accessibility: [...profileAccessibilities] }
  }
}

export default fp(async (fastify) => {
  const { db } = fastify
  const now = () => new Date(fastify.now())

  /** Validated, canonical column values; only allow-listed fields are ever copied. */
  function columnsOf (changes: ProfileChanges): Partial<NewUser> {
    const values: Record<string, string | null> = {}
    for (const field of editableProfileFields) {
      const raw = changes[field]
      if (raw === undefined) continue
      if (raw === null) {
        if (['language', 'theme', 'timezone', 'profile_accessibility'].includes(field)) throw invalid(field, 'cannot be null')
        values[field] = null
        continue
      }
      switch (field) {
        case 'timezone': values[field] = canonicalTimeZone(raw); break
        case 'country': values[field] = canonicalCountry(raw); break
        case 'dob': values[field] = checkDateOfBirth(raw, now()); break
        case 'language':
          if (!isSupportedLanguage(raw)) throw invalid(field, `must be one of ${languages.join(', ')}`)
          values[field] = raw
          break
        case 'theme':
          if (!(themes as readonly string[]).includes(raw)) throw invalid(field, `must be one of ${themes.join(', ')}`)
          values[field] = raw
          break
        case 'profile_accessibility':
          if (!(profileAccessibilities as readonly string[]).includes(raw)) throw invalid(field, `must be one of ${profileAccessibilities.join(', ')}`)
          values[field] = raw
          break
        default: {
          const trimmed = raw.trim()
          values[field] = trimmed === '' ? null : trimmed
        }
      }
    }
    return values as Partial<NewUser>
  }

  const write = (userId: string, values: Partial<NewUser>) => updateUserRow(db, userId, values, now())

  const service: ProfileService = {
    async update (request, changes) {
      const userId = request.auth!.userId
      const values = columnsOf(changes)
      const row = await write(userId, values)
      // The session token's profile snapshot and the cached language follow last_updated.
      await fastify.sessions.refreshUserState(userId)
      request.userLanguage = row.language
      await fastify.audit(request.caller, { action: 'profile_update', module: 'settings', targetUserId: userId, metadata: { fields: Object.keys(values) } })
      return toPublicUser(row)
    },

    async setSetting (request, field, value) {
      const userId = request.auth!.userId
      const row = await write(userId, columnsOf({ [field]: value }))
      await fastify.sessions.refreshUserState(userId)
      // A new language already applies to this answer.
      request.userLanguage = row.language
      await fastify.audit(request.caller, { action: 'setting_update', module: 'settings', targetUserId: userId, metadata: { field, value: row[field] } })
      return settingsOf(row)
    },

    async settings (userId) {
      const row = await fastify.users.findById(userId)
      if (!row) throw new AppError('USER_NOT_FOUND')
      return settingsOf(row)
    },

    async view (request, userId) {
      const auth = request.auth!
      const row = await fastify.users.findById(userId)
      if (row && (userId === auth.userId || hasPermissions(auth, ['view_user']))) return toPublicUser(row)
      // Private, inactive, deleted and unknown look the same, so ids cannot be probed (SR-25).
      if (!row || !row.is_active || row.status !== 'active' || row.profile_accessibility !== 'public') throw new AppError('USER_NOT_FOUND')
      return publicProfile(row)
    },

    async deactivate (request, reason) {
      const userId = request.auth!.userId
      const at = now()
      await db.transaction(async (tx) => {
        const guard = await fastify.rbac.lockSuperAdmins(tx)
        await guard.assertOneRemains([userId])
        await tx.update(user).set({ is_active: false, status: 'inactive', deactivated_at: at, last_updated: at }).where(eq(user.user_id, userId))
      })
      const revoked = await fastify.sessions.revokeAllForUser(userId, 'account_deactivated')
      await fastify.sessions.refreshUserState(userId)
      await fastify.audit(request.caller, { action: 'account_deactivate', module: 'settings', level: 'warning', targetUserId: userId, metadata: { revoked_sessions: revoked, ...(reason ? { reason } : {}) } })
      return { user_id: userId, status: 'inactive', revoked_sessions: revoked }
    },

    async remove (request, currentPassword) {
      const userId = request.auth!.userId
      // SR-23: a login of the last REAUTH_WINDOW_MINUTES, or the current password.
      await fastify.accounts.assertRecentAuth(request.caller, currentPassword)
      const at = now()
      // Audit rows are buffered: the ones already queued must be in the table for the update below to reach them.
      await fastify.activity.flush()
      const outcome = await db.transaction(async (tx) => {
        const guard = await fastify.rbac.lockSuperAdmins(tx)
        await guard.assertOneRemains([userId])
        const sessions = await tx.delete(session).where(eq(session.user_id, userId)).returning({ id: session.session_id })
        await tx.delete(userGroup).where(eq(userGroup.user_id, userId))
        await tx.update(activityLog).set({ user_id: null }).where(eq(activityLog.user_id, userId))
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
        const files = await tx.select().from(media).where(eq(media.user_id, userId))
        return { sessionIds: sessions.map((s) => s.id), files }
      })
      // The rows are gone; these calls write the revocations into the shared cache at once.
      await Promise.all(outcome.sessionIds.map((sid) => fastify.sessions.revoke(sid, 'account_deleted')))
      await fastify.sessions.refreshUserState(userId)
      const removal = await removeFiles(outcome.files)
      await fastify.audit(request.caller, {
        action: 'account_delete',
        module: 'settings',
        level: 'warning',
        userId: null,
        sessionId: null,
        targetUserId: userId,
        metadata: { revoked_sessions: outcome.sessionIds.length, files_deleted: removal.deleted, files_pending: removal.pending }
      })
      // Requests of this user still in flight during the transaction may have queued rows naming them since.
      await fastify.activity.flush()
      await db.update(activityLog).set({ user_id: null }).where(eq(activityLog.user_id, userId))
      return { user_id: userId, status: 'deleted', revoked_sessions: outcome.sessionIds.length, files_deleted: removal.deleted, files_pending: removal.pending }
    }
  }

  async function removeFiles (files: Media[]) {
    let deleted = 0
    let pending = 0
    // A profile picture is two rows (picture and thumbnail) that one removal takes together.
    const done = new Set<string>()
    for (const file of files) {
      const unit = file.purpose === 'profile_picture' ? file.object_key.replace(/_thumb\.webp$/, '.webp') : file.object_key
      if (done.has(unit)) continue
      done.add(unit)
      try {
        await fastify.uploads.remove(file)
        deleted++
      } catch (err) {
        pending++
        fastify.log.error({ err, fileId: file.media_id }, 'could not remove a file of a deleted account; its record is kept so it can be removed later')
      }
    }
    return { deleted, pending }
  }

  fastify.decorate('profiles', service)
}, { name: 'profiles', dependencies: ['db', 'users', 'sessions', 'accounts', 'rbac', 'uploads', 'activity'] })
