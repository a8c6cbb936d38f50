/**
 * The one registry of error codes. Every failure the API answers carries one of
 * these codes; each has an HTTP status and a message key `errors.<CODE>` that
 * every i18n catalog must translate (test/i18n.test.ts checks it). The OpenAPI
 * document lists them (see plugins/external/swagger.ts).
 */
export const errorCodes = {
  // Generic
  VALIDATION_ERROR: { status: 400, description: 'A parameter, query or body field is missing or invalid; details lists each problem' },
  MALFORMED_JSON: { status: 400, description: 'The body is not valid JSON' },
  BAD_REQUEST: { status: 400, description: 'The request cannot be processed as sent' },
  AUTH_REQUIRED: { status: 401, description: 'No credential was sent' },
  FORBIDDEN: { status: 403, description: 'The caller lacks the permission the route requires' },
  NOT_FOUND: { status: 404, description: 'No such route or resource' },
  METHOD_NOT_ALLOWED: { status: 405, description: 'The route exists but not with this method' },
  CONFLICT: { status: 409, description: 'The change conflicts with the current state' },
  PAYLOAD_TOO_LARGE: { status: 413, description: 'The body is larger than the limit' },
  REQUEST_TIMEOUT: { status: 408, description: 'The request (headers or body) took longer to arrive than the server waits; the connection was closed' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, description: 'The Content-Type is not accepted by this route' },
  UNSUPPORTED_CONTENT_ENCODING: { status: 415, description: 'The Content-Encoding of the body is not supported; send it uncompressed or as gzip, deflate or br' },
  RATE_LIMITED: { status: 429, description: 'Too many requests; retry after the Retry-After header' },
  INTERNAL_ERROR: { status: 500, description: 'An unexpected error; it was logged and reported' },
  BAD_GATEWAY: { status: 502, description: 'An upstream service failed' },
  SERVICE_UNAVAILABLE: { status: 503, description: 'A dependency (database or cache) is unavailable; retry later' },

  // Authentication and tokens
  AUTH_INVALID_CREDENTIALS: { status: 401, description: 'Identifier or password is wrong' },
  AUTH_INVALID_TOKEN: { status: 401, description: 'The token is malformed, has a bad signature, or wrong claims' },
  AUTH_TOKEN_EXPIRED: { status: 401, description: 'The token has expired' },
  AUTH_SESSION_REVOKED: { status: 401, description: 'The session was logged out or revoked' },
  AUTH_REFRESH_INVALID: { status: 401, description: 'The refresh token is unknown, expired or revoked' },
  AUTH_REFRESH_REUSED: { status: 401, description: 'A rotated refresh token was replayed; the session was revoked' },
  AUTH_ACCOUNT_INACTIVE: { status: 403, description: 'The account is deactivated' },
  AUTH_ACCOUNT_LOCKED: { status: 429, description: 'Too many failed attempts; retry after the Retry-After header' },
  AUTH_REAUTH_REQUIRED: { status: 403, description: 'This change needs a fresh login or the current password' },
  AUTH_CURRENT_PASSWORD_INVALID: { status: 400, description: 'The current password is wrong' },

  // Multi-factor authentication
  MFA_INVALID_CODE: { status: 400, description: 'The authenticator or recovery code is wrong, expired or already used' },
  MFA_TICKET_INVALID: { status: 401, description: 'The MFA ticket is unknown, expired or used; log in again' },
  MFA_STEP_UP_REQUIRED: { status: 403, description: 'This change needs a session that proved the second factor (aal2): log in with it again' },
  MFA_ENROLMENT_REQUIRED: { status: 403, description: 'A group you belong to requires a second factor: enrol one first' },
  MFA_ALREADY_ENROLLED: { status: 409, description: 'An authenticator app is already enrolled; remove it first' },
  MFA_FACTOR_NOT_FOUND: { status: 404, description: 'No such factor, or it is not pending confirmation' },

  // Passkeys (WebAuthn)
  PASSKEY_CHALLENGE_INVALID: { status: 400, description: 'The passkey challenge is unknown, expired, already used or was issued for something else: ask for new options' },
  PASSKEY_INVALID: { status: 401, description: 'The passkey sign-in could not be verified' },
  PASSKEY_REGISTRATION_FAILED: { status: 400, description: 'The new passkey could not be verified (origin, relying party, user verification or attestation)' },
  PASSKEY_ALREADY_REGISTERED: { status: 409, description: 'This passkey is already registered' },
  PASSKEY_NOT_FOUND: { status: 404, description: 'No such passkey' },

  // Passwords
  PASSWORD_TOO_SHORT: { status: 400, description: 'The password is shorter than the minimum length' },
  PASSWORD_TOO_LONG: { status: 400, description: 'The password is longer than the maximum length' },
  WEAK_PASSWORD: { status: 400, description: 'The password is on the list of common passwords' },
  PASSWORD_NOT_SET: { status: 400, description: 'The account has no password yet; use set-password' },
  PASSWORD_ALREADY_SET: { status: 409, description: 'The account already has a password; use change-password' },

  // One-time passwords
  OTP_INVALID: { status: 400, description: 'The code is wrong, expired, used, or for another purpose' },
  OTP_COOLDOWN: { status: 429, description: 'A code was sent moments ago; retry after the Retry-After header' },
  OTP_DAILY_LIMIT: { status: 429, description: 'Too many codes sent to this destination today' },
  OTP_DELIVERY_FAILED: { status: 502, description: 'The code could not be delivered' },

  // Users, identifiers
  USER_NOT_FOUND: { status: 404, description: 'No such user' },
  INVITATION_INVALID: { status: 400, description: 'The invitation code is wrong, expired or already used' },
  NO_CONTACT_ADDRESS: { status: 409, description: 'The account has no email address or phone number to send to on this channel' },
  EMAIL_TAKEN: { status: 409, description: 'The email is used by another account' },
  PHONE_TAKEN: { status: 409, description: 'The phone number is used by another account' },
  USER_NAME_TAKEN: { status: 409, description: 'The user name is used by another account' },
  INVALID_PHONE: { status: 400, description: 'The phone number is not a valid international number' },
  CONTACT_ALREADY_VERIFIED: { status: 409, description: 'The email or phone number is already verified' },
  CONTACT_UNCHANGED: { status: 400, description: 'The new email or phone number is the current one' },

  // Permissions and groups
  PERMISSION_NOT_FOUND: { status: 404, description: 'No such permission' },
  GROUP_NOT_FOUND: { status: 404, description: 'No such group' },
  SYSTEM_GROUP_PROTECTED: { status: 403, description: 'System groups can only be changed by a super admin, and never deleted' },
  PRIVILEGE_ESCALATION: { status: 403, description: 'Nobody grants a permission or group they do not hold' },
  LAST_SUPER_ADMIN: { status: 409, description: 'The last active super admin cannot be removed or deactivated' },
  PERMISSION_PROTECTED: { status: 403, description: 'A built-in permission is required by the API\'s routes: it cannot be deleted' },

  // Activity
  ACTIVITY_NOT_FOUND: { status: 404, description: 'No such activity log entry' },
  RETENTION_TOO_SHORT: { status: 400, description: 'Cleanup must keep at least the minimum retention' },

  // Uploads
  MEDIA_NOT_FOUND: { status: 404, description: 'No such file' },
  DOWNLOAD_LINK_INVALID: { status: 403, description: 'The download link has a wrong signature or has expired; ask the API for a new one' },
  FILE_TYPE_NOT_ALLOWED: { status: 415, description: 'The file content is not an allowed type' },
  FILE_TOO_LARGE: { status: 413, description: 'The file is larger than its type allows' },
  UPLOAD_QUOTA_EXCEEDED: { status: 413, description: 'The file would take your stored files past your storage quota; delete some first' },
  URL_NOT_ALLOWED: { status: 400, description: 'The URL is not http(s) or resolves to a non-public address' },
  URL_FETCH_FAILED: { status: 502, description: 'The URL could not be fetched' },
  STORAGE_ERROR: { status: 502, description: 'The storage backend failed' }
} as const satisfies Record<string, { status: number, description: string }>

export type ErrorCode = keyof typeof errorCodes

export interface AppErrorOptions {
  details?: unknown
  /** Extra values for the translated message template. */
  params?: Record<string, string | number>
  /** Sets Retry-After (seconds). */
  retryAfter?: number
  /** Overrides the registry's status (rarely needed). */
  status?: number
  cause?: unknown
}

/** The one error type of the API. Throw it; the error handler builds the envelope. */
export class AppError extends Error {
  readonly code: ErrorCode
  readonly statusCode: number
  readonly details?: unknown
  readonly params?: Record<string, string | number>
  readonly retryAfter?: number

  constructor (code: ErrorCode, options: AppErrorOptions = {}) {
    super(errorCodes[code].description, { cause: options.cause })
    this.name = 'AppError'
    this.code = code
    this.statusCode = options.status ?? errorCodes[code].status
    this.details = options.details
    this.params = options.params
    this.retryAfter = options.retryAfter
  }
}
