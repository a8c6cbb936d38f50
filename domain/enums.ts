/**
 * The closed value lists of the domain, each with its type. Both layers that
 * state them import them from here: db/schema (column enums and CHECK
 * constraints) and schemas/ (the API's literal unions), so the database and
 * the API can never disagree on a value. Pure constants: this module imports
 * nothing, so neither layer depends on the other.
 */

/** How an account signs in (`user.auth_type`). */
export const authTypes = ['email', 'phone', 'user_name'] as const
export type AuthType = typeof authTypes[number]

/** The account's role family (`user.user_type`). */
export const userTypes = ['user', 'admin', 'super_admin', 'developer', 'business', 'accountant'] as const
export type UserType = typeof userTypes[number]

/** The account's life cycle (`user.status`). */
export const userStatuses = ['active', 'inactive', 'deleted'] as const
export type UserStatus = typeof userStatuses[number]

/** The interface theme a user chose (`user.theme`). */
export const themes = ['light', 'dark', 'system'] as const
export type Theme = typeof themes[number]

/** Who sees a profile (`user.profile_accessibility`). */
export const profileAccessibilities = ['public', 'private'] as const
export type ProfileAccessibility = typeof profileAccessibilities[number]

/** How a session was opened (`session.auth_method`). */
export const authMethods = ['password', 'otp', 'oauth_password', 'webauthn'] as const
export type AuthMethod = typeof authMethods[number]

/** Severity of an activity row (`activity_log.level`). */
export const activityLevels = ['debug', 'info', 'warning', 'error', 'critical'] as const
export type ActivityLevel = typeof activityLevels[number]

/** What an uploaded file is for (`media.purpose`). */
export const mediaPurposes = ['media', 'profile_picture'] as const
export type MediaPurpose = typeof mediaPurposes[number]
