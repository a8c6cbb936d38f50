import { Type, type Static } from '@sinclair/typebox'
import { Nullable } from './envelope.ts'

/**
 * A user as the API shows it to its owner or an administrator. Being the response
 * schema, it is an allow-list: the password hash and internal counters can never
 * leave the server, whatever a query selects.
 */
export const UserSchema = Type.Object({
  user_id: Type.String({ format: 'uuid' }),
  email: Nullable(Type.String()),
  phone_number: Nullable(Type.String()),
  user_name: Nullable(Type.String()),
  first_name: Nullable(Type.String()),
  last_name: Nullable(Type.String()),
  bio: Nullable(Type.String()),
  country: Nullable(Type.String()),
  gender: Nullable(Type.String()),
  dob: Nullable(Type.String({ format: 'date' })),
  language: Type.String(),
  theme: Type.String(),
  timezone: Type.String(),
  profile_accessibility: Type.String(),
  profile_picture_url: Nullable(Type.String()),
  auth_type: Type.String(),
  user_type: Type.String(),
  is_email_verified: Type.Boolean(),
  is_phone_verified: Type.Boolean(),
  is_active: Type.Boolean(),
  status: Type.String(),
  has_password: Type.Boolean(),
  last_login: Nullable(Type.String({ format: 'date-time' })),
  created_at: Type.String({ format: 'date-time' }),
  last_updated: Type.String({ format: 'date-time' })
}, { $id: 'User', description: 'A user account (never its password hash)' })

/** What another user may see of a public profile. */
export const PublicProfileSchema = Type.Object({
  user_id: Type.String({ format: 'uuid' }),
  user_name: Nullable(Type.String()),
  first_name: Nullable(Type.String()),
  last_name: Nullable(Type.String()),
  bio: Nullable(Type.String()),
  country: Nullable(Type.String()),
  profile_picture_url: Nullable(Type.String()),
  profile_accessibility: Type.String()
}, { $id: 'PublicProfile', description: 'The public part of a profile' })

/** What services return for these answers: the response schemas' own types, never restated by hand. */
export type UserView = Static<typeof UserSchema>
export type PublicProfileView = Static<typeof PublicProfileSchema>
