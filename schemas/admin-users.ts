import { Type, type Static } from '@sinclair/typebox'
import { literals, Nullable, OrNull, StrictObject } from './envelope.ts'
import { EmailInput, PhoneInput, UserNameInput } from './otp.ts'
import { CountryInput, LanguageInput, TimeZoneInput } from './settings.ts'
import { UserSchema } from './user.ts'
import { ref } from './ref.ts'

/**
 * Administrators' user management (POST/GET/PATCH/DELETE P/users/{user_id} and
 * its sessions, password reset, unlock) and the invitation an account created
 * without a password receives (POST P/auth/accept-invitation).
 */

const Line = (max: number) => Type.String({ minLength: 1, maxLength: max, pattern: '^[^\\u0000-\\u001f\\u007f]*$' })
const NewPassword = Type.String({ minLength: 1, maxLength: 4096, description: 'The password (8-128 characters by default; common passwords are refused)' })
/** A group named by its id or its codename. */
const GroupReference = Type.String({ minLength: 1, maxLength: 64, description: 'An id (UUID) or a codename' })

export const UserCreateBody = StrictObject({
  email: Type.Optional(EmailInput),
  phone_number: Type.Optional(PhoneInput),
  password: Type.Optional(NewPassword),
  user_name: Type.Optional(UserNameInput),
  first_name: Type.Optional(Line(100)),
  last_name: Type.Optional(Line(100)),
  language: Type.Optional(LanguageInput),
  timezone: Type.Optional(TimeZoneInput),
  country: Type.Optional(CountryInput),
  is_email_verified: Type.Optional(Type.Boolean({ default: false })),
  is_phone_verified: Type.Optional(Type.Boolean({ default: false })),
  groups: Type.Optional(Type.Array(GroupReference, { maxItems: 100, uniqueItems: true, description: 'Groups (ids or codenames); default: the user group. You must hold every permission they grant' })),
  invitation_channel: Type.Optional(literals(['email', 'sms', 'whatsapp'] as const, { description: 'Where the invitation goes when no password is given (default: email if given, else sms)' }))
}, { $id: 'UserCreateRequest', description: 'At least one of email or phone_number' })

export const UserUpdateBody = StrictObject({
  email: Type.Optional(EmailInput),
  phone_number: Type.Optional(OrNull(PhoneInput)),
  user_name: Type.Optional(OrNull(UserNameInput)),
  first_name: Type.Optional(OrNull(Line(100))),
  last_name: Type.Optional(OrNull(Line(100))),
  bio: Type.Optional(OrNull(Type.String({ maxLength: 500 }))),
  country: Type.Optional(OrNull(CountryInput)),
  language: Type.Optional(LanguageInput),
  timezone: Type.Optional(TimeZoneInput),
  is_email_verified: Type.Optional(Type.Boolean()),
  is_phone_verified: Type.Optional(Type.Boolean()),
  is_active: Type.Optional(Type.Boolean({ description: 'false deactivates the account and signs out all its sessions' }))
}, { $id: 'UserUpdateRequest', minProperties: 1 })

const invitationSent = {
  channel: Type.String(),
  destination: Type.String({ description: 'The masked address the invitation went to' }),
  expires_in: Type.Integer({ description: 'Seconds the invitation stays valid' })
}

export const InvitationSentSchema = Type.Object(invitationSent, { $id: 'InvitationSent' })

export const UserCreatedSchema = Type.Object({
  user: ref(UserSchema),
  // Inline rather than a reference: a nullable $ref would be an anyOf, which the serializer validates per field.
  invitation: Nullable(Type.Object(invitationSent, { description: 'The invitation sent, when no password was given' }))
})

export const InvitationResendBody = StrictObject({
  channel: Type.Optional(literals(['email', 'sms', 'whatsapp'] as const))
}, { $id: 'InvitationResendRequest' })

export const AcceptInvitationBody = StrictObject({
  code: Type.String({ minLength: 20, maxLength: 200, description: 'The invitation code that was sent' }),
  password: NewPassword
}, { $id: 'AcceptInvitationRequest' })

export const AdminPasswordResetBody = StrictObject({
  channel: Type.Optional(literals(['email', 'sms', 'whatsapp'] as const, { description: 'Default: email when the account has one, else sms' }))
}, { $id: 'AdminPasswordResetRequest' })

export const UserRemovedSchema = Type.Object({
  user_id: Type.String({ format: 'uuid' }),
  status: Type.Literal('deleted'),
  revoked_sessions: Type.Integer()
}, { $id: 'UserRemoved' })

export const SessionsRevokedSchema = Type.Object({
  revoked_sessions: Type.Integer()
}, { $id: 'SessionsRevoked' })

export const UserUnlockedSchema = Type.Object({
  user_id: Type.String({ format: 'uuid' }),
  unlocked: Type.Boolean()
}, { $id: 'UserUnlocked' })

export const adminUserSchemas = [
  UserCreateBody, UserUpdateBody, InvitationSentSchema, InvitationResendBody, AcceptInvitationBody, AdminPasswordResetBody,
  UserRemovedSchema, SessionsRevokedSchema, UserUnlockedSchema
]

export type UserCreateInput = Static<typeof UserCreateBody>
export type UserUpdateInput = Static<typeof UserUpdateBody>
export type InvitationSentView = Static<typeof InvitationSentSchema>
export type UserRemovedView = Static<typeof UserRemovedSchema>
