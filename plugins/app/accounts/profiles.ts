import fp from 'fastify-plugin'
import { unlinkActor } from '../activity/writer.ts'
import type { Static } from '@sinclair/typebox'
import { profileAccessibilities, themes, type Media, type NewUser, type User } from '../../../db/schema/index.ts'
import { isSupportedLanguage, languages } from '../../../i18n/index.ts'
import { AppError } from '../../../schemas/errors.ts'
import type { PublicProfileSchema } from '../../../schemas/user.ts'
import type { AccountClosedSchema, SettingsSchema } from '../../../schemas/settings.ts'
import { hasPermissions } from '../auth/authenticate.ts'
import type { Caller } from '../auth/caller.ts'
import { requireActor } from '../access-control/rules.ts'
import { canonicalTimeZone } from '../../../schemas/time-zone.ts'
import { toPublicUser, type PublicUser } from './users.ts'

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

export type SettingsView = Static<typeof SettingsSchema>
export type AccountClosed = Static<typeof AccountClosedSchema>

/**
 * The caller's own account throughout. `update` and `setSetting` return the new
 * row's view; the route makes a new language apply to its own answer.
 */
export interface ProfileService {
  update: (caller: Caller, changes: ProfileChanges) => Promise<PublicUser>
  setSetting: (caller: Caller, field: SettingField, value: string) => Promise<SettingsView>
  settings: (userId: string) => Promise<SettingsView>
  /** Another user's profile: the whole account for yourself and holders of view_user, else the public part of a public, active profile. */
  view: (caller: Caller, userId: string) => Promise<PublicUser | PublicProfile>
  deactivate: (caller: Caller, reason?: string) => Promise<AccountClosed>
  remove: (caller: Caller, currentPassword?: string) => Promise<AccountClosed>
}

declare module 'fastify' {
  interface FastifyInstance { profiles: ProfileService }
}

const invalid = (field: string, message: string) => new AppError('VALIDATION_ERROR', { details: [{ field: `body/${field}`, message }] })

/** An IANA zone with its canonical spelling ("europe/paris" → "Europe/Paris"), or a validation error. */
function checkTimeZone (value: string): string {
  const zone = canonicalTimeZone(value)
  if (zone === undefined) throw invalid('timezone', 'must be an IANA time zone name, e.g. Europe/Paris')
  return zone
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
        case 'timezone': values[field] = checkTimeZone(raw); break
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

  const { db, users } = fastify

  const service: ProfileService = {
    async update (caller, changes) {
      const userId = requireActor(caller).userId
      const values = columnsOf(changes)
      const row = await users.update(userId, values)
      // The session token's profile snapshot and the cached language follow last_updated.
      await fastify.sessions.refreshUserState(userId)
      await fastify.audit(caller, { action: 'profile_update', module: 'settings', targetUserId: userId, metadata: { fields: Object.keys(values) } })
      return toPublicUser(row)
    },

    async setSetting (caller, field, value) {
      const userId = requireActor(caller).userId
      const row = await users.update(userId, columnsOf({ [field]: value }))
      await fastify.sessions.refreshUserState(userId)
      await fastify.audit(caller, { action: 'setting_update', module: 'settings', targetUserId: userId, metadata: { field, value: row[field] } })
      return settingsOf(row)
    },

    async settings (userId) {
      const row = await users.findById(userId)
      if (!row) throw new AppError('USER_NOT_FOUND')
      return settingsOf(row)
    },

    async view (caller, userId) {
      const actor = requireActor(caller)
      const row = await users.findById(userId)
      if (row && (userId === actor.userId || hasPermissions(actor, ['view_user']))) return toPublicUser(row)
      // Private, inactive, deleted and unknown look the same, so ids cannot be probed (SR-25).
      if (!row || !row.is_active || row.status !== 'active' || row.profile_accessibility !== 'public') throw new AppError('USER_NOT_FOUND')
      return publicProfile(row)
    },

    async deactivate (caller, reason) {
      const userId = requireActor(caller).userId
      await db.transaction(async (tx) => {
        const guard = await fastify.groupRepository.lockSuperAdmins(tx)
        await guard.assertOneRemains([userId])
        await users.update(userId, { is_active: false, status: 'inactive', deactivated_at: now() }, tx)
      })
      const revoked = await fastify.sessions.revokeAllForUser(userId, 'account_deactivated')
      await fastify.sessions.refreshUserState(userId)
      await fastify.audit(caller, { action: 'account_deactivate', module: 'settings', level: 'warning', targetUserId: userId, metadata: { revoked_sessions: revoked, ...(reason ? { reason } : {}) } })
      return { user_id: userId, status: 'inactive', revoked_sessions: revoked }
    },

    async remove (caller, currentPassword) {
      const userId = requireActor(caller).userId
      // SR-23: a login of the last REAUTH_WINDOW_MINUTES, or the current password.
      await fastify.accounts.assertRecentAuth(caller, currentPassword)
      // Audit rows are buffered: the ones already queued must be in the table for the update below to reach them.
      await fastify.activity.flush()
      const outcome = await db.transaction(async (tx) => {
        const guard = await fastify.groupRepository.lockSuperAdmins(tx)
        await guard.assertOneRemains([userId])
        // The session rows go, and their revocations reach the shared cache at once.
        const revoked = await fastify.sessions.deleteAllForUser(userId, { tx })
        await fastify.groupRepository.removeAllMemberships(userId, tx)
        await unlinkActor(tx, userId)
        await users.anonymise(userId, tx)
        const files = await fastify.uploads.ownedBy(userId, tx)
        return { revoked, files }
      })
      await fastify.sessions.refreshUserState(userId)
      const removal = await removeFiles(outcome.files)
      await fastify.audit(caller, {
        action: 'account_delete',
        module: 'settings',
        level: 'warning',
        userId: null,
        sessionId: null,
        targetUserId: userId,
        metadata: { revoked_sessions: outcome.revoked, files_deleted: removal.deleted, files_pending: removal.pending }
      })
      // Requests of this user still in flight during the transaction may have queued rows naming them since.
      await fastify.activity.flush()
      await unlinkActor(db, userId)
      return { user_id: userId, status: 'deleted', revoked_sessions: outcome.revoked, files_deleted: removal.deleted, files_pending: removal.pending }
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
}, { name: 'profiles', dependencies: ['db', 'users', 'group-repository', 'sessions', 'accounts', 'uploads', 'activity'] })
