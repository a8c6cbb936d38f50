import { Type, type Static } from '@sinclair/typebox'
import { literals, OrNull, StrictObject } from './envelope.ts'
import { PublicProfileSchema, UserSchema } from './user.ts'
import { UserNameInput } from './otp.ts'
import { languages } from '../i18n/index.ts'
import { profileAccessibilities, themes } from '../domain/enums.ts'
import { ref } from './ref.ts'

/**
 * Bodies and answers of P/settings. The profile body is the allow-list of
 * SR-26: a field that is not declared here (status, is_active, user_type,
 * email, phone_number, password, groups, ...) is a 400 VALIDATION_ERROR and
 * nothing of the request is written. Email and phone have their own two-step
 * routes (change-email, change-phone); the password has change-password.
 */

// No control characters in one-line fields (they break logs, e-mails and UIs).
const Line = (max: number, description: string) => Type.String({ minLength: 1, maxLength: max, pattern: '^[^\\u0000-\\u001f\\u007f]*$', description })

export const LanguageInput = literals(languages, { description: `One of the supported languages: ${languages.join(', ')}` })
export const ThemeInput = literals(themes, { description: 'light, dark or system' })
export const AccessibilityInput = literals(profileAccessibilities, { description: 'public: other signed-in users see the public part of the profile; private: nobody without view_user sees it' })
export const TimeZoneInput = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$', description: 'An IANA time zone name, e.g. Europe/Paris or UTC' })
export const CountryInput = Type.String({ pattern: '^[A-Za-z]{2}$', description: 'ISO 3166-1 alpha-2 country code, e.g. FR' })

export const ProfileUpdateBody = StrictObject({
  user_name: Type.Optional(OrNull(UserNameInput)),
  first_name: Type.Optional(OrNull(Line(100, 'Given name'))),
  last_name: Type.Optional(OrNull(Line(100, 'Family name'))),
  bio: Type.Optional(OrNull(Type.String({ maxLength: 1000, pattern: '^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f]*$', description: 'Free text; line breaks allowed' }))),
  country: Type.Optional(OrNull(CountryInput)),
  gender: Type.Optional(OrNull(Line(50, 'Free text'))),
  dob: Type.Optional(OrNull(Type.String({ format: 'date', description: 'Date of birth, YYYY-MM-DD, in the past' }))),
  language: Type.Optional(LanguageInput),
  theme: Type.Optional(ThemeInput),
  timezone: Type.Optional(TimeZoneInput),
  profile_accessibility: Type.Optional(AccessibilityInput)
}, {
  $id: 'ProfileUpdateRequest',
  minProperties: 1,
  description: 'Only these fields; null clears an optional one. Anything else (status, is_active, user_type, email, phone_number, password, groups, ...) is refused with 400 and nothing is written.'
})

export const ProfileAccessibilityBody = StrictObject({ profile_accessibility: AccessibilityInput }, { $id: 'ProfileAccessibilityRequest' })
export const ProfileLanguageBody = StrictObject({ language: LanguageInput }, { $id: 'ProfileLanguageRequest' })
export const ThemeBody = StrictObject({ theme: ThemeInput }, { $id: 'ThemeRequest' })
export const TimeZoneBody = StrictObject({ timezone: TimeZoneInput }, { $id: 'TimeZoneRequest' })

export const SettingsSchema = Type.Object({
  language: Type.String(),
  theme: Type.String(),
  timezone: Type.String(),
  profile_accessibility: Type.String(),
  is_email_verified: Type.Boolean(),
  is_phone_verified: Type.Boolean(),
  has_password: Type.Boolean(),
  available: Type.Object({
    languages: Type.Array(Type.String()),
    themes: Type.Array(Type.String()),
    profile_accessibility: Type.Array(Type.String())
  }, { description: 'The values each setting accepts (time zones: any IANA name)' })
}, { $id: 'Settings', description: 'Your settings' })

/** Another user's profile: the full account for holders of view_user (and yourself), the public part otherwise. */
export const ProfileViewSchema = Type.Union([ref(UserSchema), ref(PublicProfileSchema)], { $id: 'ProfileView' })

export const DeactivateAccountBody = StrictObject({
  reason: Type.Optional(Type.String({ maxLength: 500, description: 'Kept in the audit log' }))
}, { $id: 'DeactivateAccountRequest' })

export const DeleteAccountBody = StrictObject({
  current_password: Type.Optional(Type.String({ minLength: 1, maxLength: 4096, description: 'Needed unless you logged in within the last minutes (REAUTH_WINDOW_MINUTES)' }))
}, { $id: 'DeleteAccountRequest' })

export const AccountClosedSchema = Type.Object({
  user_id: Type.String({ format: 'uuid' }),
  status: literals(['inactive', 'deleted'] as const),
  revoked_sessions: Type.Integer({ description: 'Sessions signed out' }),
  files_deleted: Type.Optional(Type.Integer({ description: 'Uploaded files removed from storage' })),
  files_pending: Type.Optional(Type.Integer({ description: 'Files whose removal from storage failed; logged, and their records kept so an operator can remove them' }))
}, { $id: 'AccountClosed' })

export const settingsSchemas = [
  ProfileUpdateBody, ProfileAccessibilityBody, ProfileLanguageBody, ThemeBody, TimeZoneBody, SettingsSchema,
  ProfileViewSchema, DeactivateAccountBody, DeleteAccountBody, AccountClosedSchema
]

/** What services return for these answers: the response schemas' own types, never restated by hand. */
export type SettingsView = Static<typeof SettingsSchema>
export type AccountClosedView = Static<typeof AccountClosedSchema>
