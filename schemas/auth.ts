import { Type, type Static } from '@sinclair/typebox'
import { Nullable, StrictObject } from './envelope.ts'
import { UserSchema } from './user.ts'
import { ref } from './ref.ts'
import { MfaRequiredSchema } from './mfa.ts'

// Bounded so a huge value is a fast 400; the real length rules (SR-1) are checked in code, per code point.
const PasswordInput = Type.String({ minLength: 1, maxLength: 4096, description: 'The password (8-128 characters by default)' })
const Identifier = Type.String({ minLength: 1, maxLength: 320 })

/**
 * A name for the session's device, shown in the session lists. No control characters
 * (C0, DEL, C1), line or paragraph separators or bidirectional overrides, which could
 * disguise an entry; blank counts as none.
 */
export const DeviceNameInput = Type.String({
  minLength: 1,
  maxLength: 100,
  pattern: '^[^\\u0000-\\u001F\\u007F-\\u009F\\u2028\\u2029\\u202A-\\u202E\\u2066-\\u2069]*$',
  description: 'Names this session\'s device in the session lists (e.g. "Alice\'s phone"); up to 100 characters, no control characters'
})

export const LoginBody = StrictObject({
  identifier: Type.Optional({ ...Identifier, description: 'Email, phone number (E.164, +...) or user name' }),
  email: Type.Optional(Identifier),
  phone_number: Type.Optional(Identifier),
  user_name: Type.Optional(Identifier),
  password: PasswordInput,
  device_name: Type.Optional(DeviceNameInput)
}, { $id: 'LoginRequest', description: 'Send `identifier` (or one of email / phone_number / user_name) and the password' })

export const TokenBundleSchema = Type.Object({
  access_token: Type.String(),
  session_token: Type.String(),
  refresh_token: Type.String(),
  session_id: Type.String({ format: 'uuid' }),
  token_type: Type.Literal('bearer'),
  expires_in: Type.Integer({ description: 'Seconds until the access token expires' }),
  session_expires_in: Type.Integer({ description: 'Seconds until the session token expires' }),
  refresh_expires_in: Type.Integer({ description: 'Seconds until the refresh token expires if unused' }),
  user: ref(UserSchema)
}, { $id: 'TokenBundle' })

/** A login's answer: the tokens, or (account with a second factor) the MFA ticket to complete it with. */
export const LoginResultSchema = Type.Union([ref(TokenBundleSchema), ref(MfaRequiredSchema)], {
  $id: 'LoginResult',
  description: 'TokenBundle; or, for an account with a second factor, MfaRequired: send its mfa_ticket and a code to P/auth/mfa/challenge'
})

export const RefreshBody = StrictObject({ refresh_token: Type.String({ minLength: 10, maxLength: 512 }) }, { $id: 'RefreshRequest' })

export const LogoutScope = Type.Union([Type.Literal('current'), Type.Literal('others'), Type.Literal('all')], { description: 'current (default): this session; others: every other session; all: every session' })

export const SessionSchema = Type.Object({
  session_id: Type.String({ format: 'uuid' }),
  device_name: Nullable(Type.String({ description: 'The device_name given at login, else the device parsed from the user agent' })),
  device: Nullable(Type.String({ description: 'Browser and system parsed from the user agent, e.g. "Chrome on macOS"' })),
  ip_address: Nullable(Type.String()),
  user_agent: Nullable(Type.String()),
  auth_method: Type.String(),
  created_at: Type.String({ format: 'date-time' }),
  last_used_at: Type.String({ format: 'date-time' }),
  expires_at: Type.String({ format: 'date-time' }),
  current: Type.Boolean()
}, { $id: 'Session' })

export const TokenInfoSchema = Type.Object({
  active: Type.Boolean(),
  token_type: Type.Optional(Type.Union([Type.Literal('access'), Type.Literal('session'), Type.Literal('refresh')])),
  user_id: Type.Optional(Type.String({ format: 'uuid' })),
  session_id: Type.Optional(Type.String({ format: 'uuid' })),
  issued_at: Type.Optional(Type.String({ format: 'date-time' })),
  expires_at: Type.Optional(Type.String({ format: 'date-time' })),
  session_expires_at: Type.Optional(Type.String({ format: 'date-time', description: 'Absolute end of the session (refresh tokens stop working)' })),
  refresh_idle_expires_at: Type.Optional(Type.String({ format: 'date-time', description: 'When the session ends if no refresh happens before' })),
  permissions: Type.Optional(Type.Array(Type.String()))
}, { $id: 'TokenInfo' })

export const authSchemas = [TokenBundleSchema, LoginResultSchema, SessionSchema, TokenInfoSchema, LoginBody, RefreshBody]

/** What services return for these answers: the response schemas' own types, never restated by hand. */
export type TokenBundleView = Static<typeof TokenBundleSchema>
export type SessionView = Static<typeof SessionSchema>
export type TokenInfoView = Static<typeof TokenInfoSchema>
