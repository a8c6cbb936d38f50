import { Type, type TProperties } from '@sinclair/typebox'
import { Nullable, StrictObject } from './envelope.ts'
import { ref } from './ref.ts'

/**
 * Passkeys (WebAuthn, issue 20). The options are the JSON forms of
 * PublicKeyCredentialCreationOptions / PublicKeyCredentialRequestOptions (binary
 * fields base64url), ready for `PublicKeyCredential.parseCreationOptionsFromJSON()`
 * or @simplewebauthn/browser; the credentials sent back are what
 * `PublicKeyCredential.toJSON()` (or @simplewebauthn/browser) makes of the result.
 * The credential objects accept fields this schema does not name: browsers add
 * members to the WebAuthn JSON forms over time, and only the named ones are read.
 */

const B64u = (maxLength: number, description?: string) => Type.String({ minLength: 1, maxLength, pattern: '^[A-Za-z0-9_-]+={0,2}$', ...(description ? { description } : {}) })
const Transports = Type.Array(Type.String({ maxLength: 32 }), { maxItems: 10, description: 'How the client can reach the authenticator: internal, hybrid, usb, nfc, ble, smart-card' })
const CredentialDescriptor = Type.Object({ id: Type.String(), type: Type.Literal('public-key'), transports: Type.Optional(Type.Array(Type.String())) })
const UserVerification = Type.Union([Type.Literal('required'), Type.Literal('preferred'), Type.Literal('discouraged')])
const PasskeyName = Type.String({ minLength: 1, maxLength: 100, description: 'A name you choose to tell your passkeys apart' })

export const PasskeyCreationOptionsSchema = Type.Object({
  challenge: Type.String({ description: 'Single use; valid WEBAUTHN_CHALLENGE_TTL_SECONDS (5 minutes by default)' }),
  rp: Type.Object({ id: Type.Optional(Type.String()), name: Type.String() }),
  user: Type.Object({ id: Type.String({ description: 'The WebAuthn user handle (base64url), not the user id' }), name: Type.String(), displayName: Type.String() }),
  pubKeyCredParams: Type.Array(Type.Object({ alg: Type.Integer(), type: Type.Literal('public-key') })),
  timeout: Type.Optional(Type.Integer()),
  excludeCredentials: Type.Optional(Type.Array(CredentialDescriptor, { description: 'Your registered passkeys: an authenticator holding one refuses to make another' })),
  authenticatorSelection: Type.Optional(Type.Object({
    authenticatorAttachment: Type.Optional(Type.String()),
    requireResidentKey: Type.Optional(Type.Boolean()),
    residentKey: Type.Optional(Type.String()),
    userVerification: Type.Optional(UserVerification)
  })),
  attestation: Type.Optional(Type.String()),
  extensions: Type.Optional(Type.Object({ credProps: Type.Optional(Type.Boolean()) })),
  hints: Type.Optional(Type.Array(Type.String()))
}, { $id: 'PasskeyCreationOptions', description: 'For navigator.credentials.create({ publicKey }) (JSON form: binary fields base64url)' })

export const PasskeyRequestOptionsSchema = Type.Object({
  challenge: Type.String({ description: 'Single use; valid WEBAUTHN_CHALLENGE_TTL_SECONDS (5 minutes by default)' }),
  rpId: Type.Optional(Type.String()),
  timeout: Type.Optional(Type.Integer()),
  allowCredentials: Type.Optional(Type.Array(CredentialDescriptor, { description: 'With an identifier: the passkeys that may answer. Without: absent, the browser offers the discoverable passkeys it holds for the site' })),
  userVerification: Type.Optional(UserVerification),
  hints: Type.Optional(Type.Array(Type.String()))
}, { $id: 'PasskeyRequestOptions', description: 'For navigator.credentials.get({ publicKey }) (JSON form: binary fields base64url)' })

/** A PublicKeyCredential in its toJSON() form: the fields every ceremony shares, around its `response`. */
const CredentialJson = <R extends TProperties>(response: R, description: string) => Type.Object({
  id: B64u(1366),
  rawId: B64u(1366),
  type: Type.Literal('public-key'),
  response: Type.Object(response),
  clientExtensionResults: Type.Object({}),
  authenticatorAttachment: Type.Optional(Type.String({ maxLength: 32 }))
}, { description })

export const PasskeyRegistrationBody = StrictObject({
  credential: CredentialJson({
    clientDataJSON: B64u(8192),
    attestationObject: B64u(65536),
    transports: Type.Optional(Transports)
  }, 'The new credential, as PublicKeyCredential.toJSON() gives it'),
  name: Type.Optional(PasskeyName)
}, { $id: 'PasskeyRegistrationRequest' })

export const PasskeyLoginOptionsBody = StrictObject({
  identifier: Type.Optional(Type.String({ minLength: 1, maxLength: 320, description: 'Email, phone number or user name; leave out for a discoverable (usernameless) sign-in' }))
}, { $id: 'PasskeyLoginOptionsRequest' })

export const PasskeyLoginBody = StrictObject({
  credential: CredentialJson({
    clientDataJSON: B64u(8192),
    authenticatorData: B64u(8192),
    // Up to 8192: post-quantum ML-DSA signatures are 2.4-4.6 KB (ML-DSA-87: 6,170 characters here).
    signature: B64u(8192),
    userHandle: Type.Optional(Type.String({ maxLength: 512 }))
  }, 'The assertion, as PublicKeyCredential.toJSON() gives it')
}, { $id: 'PasskeyLoginRequest' })

export const PasskeyRenameBody = StrictObject({ name: PasskeyName }, { $id: 'PasskeyRenameRequest' })

export const PasskeySchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  name: Type.String(),
  created_at: Type.String({ format: 'date-time' }),
  last_used_at: Nullable(Type.String({ format: 'date-time' })),
  backed_up: Type.Boolean({ description: 'The passkey is backed up (synced by its provider); false for one bound to a single device' }),
  backup_eligible: Type.Boolean({ description: 'The provider may back it up (a synced passkey)' }),
  device_type: Type.Union([Type.Literal('single_device'), Type.Literal('multi_device')]),
  transports: Type.Array(Type.String())
}, { $id: 'Passkey' })

export const PasskeyListSchema = Type.Object({ passkeys: Type.Array(ref(PasskeySchema)) }, { $id: 'PasskeyList' })

export const passkeySchemas = [PasskeyCreationOptionsSchema, PasskeyRequestOptionsSchema, PasskeyRegistrationBody, PasskeyLoginOptionsBody, PasskeyLoginBody, PasskeyRenameBody, PasskeySchema, PasskeyListSchema]
