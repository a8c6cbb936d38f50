import fp from 'fastify-plugin'
import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto'
import { createSigner, createVerifier } from 'fast-jwt'
import type { Session, User } from '../../../db/schema/index.ts'
import { AppError } from '../../../schemas/errors.ts'
import { toPublicUser, type PublicUser } from '../accounts/users.ts'
import type { AuthContext } from './authenticate.ts'
import type { CurrentKey, PublishedKey } from './signing-keys.ts'
import { verifyOptions } from '../../external/jwt.ts'
import type { UserState } from './user-state.ts'

/**
 * The tokens of API.md, issued and verified here only.
 *
 * - Access and session tokens are JWTs (fixed iss/aud) carrying the session id, signed
 *   with the current key pair of signing-keys.ts (EdDSA, ES256 or RS256, its `kid` in
 *   the header), or with HS256 and the server secret when JWT_ALGORITHM=HS256
 *   (plugins/external/jwt.ts). Verification picks the key by `kid`, among the published
 *   keys only, and allows only that key's algorithm: a token of an unpublished key, or
 *   with another `alg` (HS256 over a public key, `none`) is refused (SR-17). A token
 *   without `kid` is HS256: accepted while no key pair is in use, or when issued
 *   (`iat`) before the key pair in use was created, i.e. before a switch to key pairs;
 *   its `exp` ends it as usual. A session token also carries what a request would
 *   otherwise look up: the permissions with their version, the super-admin flag and
 *   a profile snapshot with the account's last_updated it was taken at.
 * - The claims keep their compact names on the wire (tokens already issued keep
 *   verifying); everything this module hands out has readable names.
 * - Refresh tokens are opaque: `<sid>.<generation>.<mac>`, the MAC keyed by the
 *   server secret and a per-session salt (sessions.ts stores only the generation).
 */
export type TokenType = 'access' | 'session'

/** How a session was authenticated: methods (RFC 8176 names: pwd, otp, totp, webauthn...) and assurance level. */
export interface Assurance { amr: string[], aal: 1 | 2 }

/** The claims as signed. */
interface WireClaims {
  sub: string
  sid: string
  jti: string
  type: TokenType
  iat: number
  exp: number
  iss?: unknown
  aud?: unknown
  /** session tokens only: permission version, permissions, super admin, last_updated (ms), profile */
  pv?: number
  perms?: readonly string[]
  su?: boolean
  lu?: number
  profile?: PublicUser
  /** both types: authentication methods and assurance level of the session (absent on older tokens: aal 1) */
  amr?: readonly string[]
  aal?: number
}

/** A verified access or session token. */
export interface VerifiedToken {
  readonly userId: string
  readonly sessionId: string
  readonly type: TokenType
  /** seconds since the epoch */
  readonly issuedAt: number
  readonly expiresAt: number
  /** Session tokens: the permissions as issued, valid while the user's permission version is `permissionVersion`. */
  readonly permissionVersion?: number
  readonly permissions?: readonly string[]
  readonly superAdmin?: boolean
  /** Session tokens: the profile as issued, current while the account's last_updated (ms) is `profileUpdatedAt`. */
  readonly profile?: PublicUser
  readonly profileUpdatedAt?: number
  /** The session's authentication methods (empty on tokens issued before they were recorded). */
  readonly amr: readonly string[]
  /** The session's assurance level: 2 once a second factor (or a passkey) was proven. */
  readonly aal: 1 | 2
}

export interface TokenBundle {
  access_token: string
  session_token: string
  refresh_token: string
  session_id: string
  token_type: 'bearer'
  expires_in: number
  session_expires_in: number
  refresh_expires_in: number
  user: PublicUser
}

export interface TokenService {
  /** The three tokens of a session, for its refresh generation and the user's current state. */
  issue: (account: User, row: Session, generation: number, state: UserState) => TokenBundle
  /**
   * Verifies an access or session token; AUTH_TOKEN_EXPIRED or AUTH_INVALID_TOKEN on
   * any doubt (SR-17). Asynchronous only for a kid this instance does not know yet.
   */
  verify: (token: string) => Promise<VerifiedToken>
  /** `<sid>.<generation>` of a well-formed refresh token; null otherwise (nothing verified yet). */
  parseRefreshToken: (token: string) => { sessionId: string, generation: number } | null
  /** Whether `token` is the session's refresh token of that generation (MAC compared in constant time). */
  refreshTokenMatches: (row: Pick<Session, 'session_id' | 'refresh_secret'>, generation: number, token: string) => boolean
}

declare module 'fastify' {
  interface FastifyInstance { tokens: TokenService }
}

/** How far in the future an `iat` may lie: clock drift between our own instances. */
const IAT_SKEW_SECONDS = 60
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const minute = 60_000

/**
 * The profile a session token carries, when it is still the account's current one
 * (the account's last_updated equals the one the snapshot was taken at); undefined
 * otherwise, and for access tokens.
 */
export function currentProfileSnapshot (auth: AuthContext): PublicUser | undefined {
  const token = auth.token
  if (token.type !== 'session' || token.profile === undefined || token.profileUpdatedAt !== auth.state.lastUpdated) return undefined
  return token.profile
}

/** The JOSE header of a compact JWT, without verifying anything; undefined when unreadable. */
function headerOf (token: string): { kid?: unknown } | undefined {
  const dot = token.indexOf('.')
  if (dot <= 0 || dot > 1024) return undefined
  try {
    const header: unknown = JSON.parse(Buffer.from(token.slice(0, dot), 'base64url').toString())
    return typeof header === 'object' && header !== null ? header : undefined
  } catch {
    return undefined
  }
}

function safeEqual (a: string, b: string) {
  const x = Buffer.from(a)
  const y = Buffer.from(b)
  return x.length === y.length && timingSafeEqual(x, y)
}

export default fp(async (fastify) => {
  const { config } = fastify
  const secret = config.JWT_SECRET_KEY!
  const now = () => fastify.now()

  // fast-jwt's verifier cache answers the same claims object for the same token, so
  // the readable view is made once per token, not once per request.
  const views = new WeakMap<WireClaims, VerifiedToken>()
  function viewOf (claims: WireClaims): VerifiedToken {
    let view = views.get(claims)
    if (view === undefined) {
      view = {
        userId: claims.sub,
        sessionId: claims.sid,
        type: claims.type,
        issuedAt: claims.iat,
        expiresAt: claims.exp,
        permissionVersion: claims.pv,
        permissions: claims.perms,
        superAdmin: claims.su,
        profile: claims.profile,
        profileUpdatedAt: claims.lu,
        amr: Array.isArray(claims.amr) ? claims.amr : [],
        aal: claims.aal === 2 ? 2 : 1
      }
      views.set(claims, view)
    }
    return view
  }

  const { signingKeys } = fastify
  const common = verifyOptions(config)
  // One signer per signing key and one caching verifier per published key, by kid,
  // built on first use (the key set is re-read every minute; the caches stay).
  const signers = new Map<string, (payload: object) => string>()
  const verifiers = new Map<string, (token: string) => WireClaims>()
  const signerOf = (key: CurrentKey) => {
    let signer = signers.get(key.kid)
    if (signer === undefined) {
      signer = createSigner({ key: key.privatePem, algorithm: key.alg, kid: key.kid, iss: config.JWT_ISSUER, aud: config.JWT_AUDIENCE })
      signers.set(key.kid, signer)
    }
    return signer
  }
  const verifierOf = (key: PublishedKey) => {
    let verifier = verifiers.get(key.kid)
    if (verifier === undefined) {
      verifier = createVerifier({ key: key.publicPem, algorithms: [key.alg], ...common }) as (token: string) => WireClaims
      verifiers.set(key.kid, verifier)
    }
    return verifier
  }

  /** The signature check: by kid among the published keys, or HS256 without one. */
  async function verifySignature (token: string): Promise<WireClaims> {
    const header = headerOf(token)
    if (header === undefined) throw new AppError('AUTH_INVALID_TOKEN')
    if (header.kid === undefined) {
      const claims = fastify.jwt.verify<WireClaims>(token)
      // HS256 outside its use: only a token issued before the key pair in use was created.
      const inUse = signingKeys.current()
      if (inUse !== undefined && !(typeof claims.iat === 'number' && claims.iat * 1000 <= inUse.createdAt + IAT_SKEW_SECONDS * 1000)) throw new AppError('AUTH_INVALID_TOKEN')
      return claims
    }
    if (typeof header.kid !== 'string') throw new AppError('AUTH_INVALID_TOKEN')
    const key = signingKeys.get(header.kid) ?? await signingKeys.find(header.kid)
    if (key === undefined) throw new AppError('AUTH_INVALID_TOKEN')
    return verifierOf(key)(token)
  }

  async function verify (token: string): Promise<VerifiedToken> {
    let claims: WireClaims
    try {
      claims = await verifySignature(token)
    } catch (error) {
      if (error instanceof AppError) throw error
      const code = (error as { code?: string }).code
      throw new AppError(code === 'FAST_JWT_EXPIRED' ? 'AUTH_TOKEN_EXPIRED' : 'AUTH_INVALID_TOKEN')
    }
    // fast-jwt accepts an `aud` array that contains ours; we issue one audience only.
    if (typeof claims.iss !== 'string' || typeof claims.aud !== 'string') throw new AppError('AUTH_INVALID_TOKEN')
    if (typeof claims.iat !== 'number' || claims.iat > now() / 1000 + IAT_SKEW_SECONDS) throw new AppError('AUTH_INVALID_TOKEN')
    if (claims.type !== 'access' && claims.type !== 'session') throw new AppError('AUTH_INVALID_TOKEN')
    return viewOf(claims)
  }

  function sign (claims: Omit<WireClaims, 'iat' | 'exp' | 'jti'>, ttlMs: number, capAt: number) {
    const issuedAt = now()
    const exp = Math.floor(Math.min(issuedAt + ttlMs, capAt) / 1000)
    const payload = { ...claims, jti: randomUUID(), iat: Math.floor(issuedAt / 1000), exp }
    const key = signingKeys.current()
    return { token: key === undefined ? fastify.jwt.sign(payload) : signerOf(key)(payload), exp }
  }

  const mac = (sid: string, generation: number, salt: string) =>
    createHmac('sha256', secret).update(`refresh.${sid}.${generation}.${salt}`).digest('base64url')
  const refreshTokenOf = (row: Pick<Session, 'session_id' | 'refresh_secret'>, generation: number) =>
    `${row.session_id}.${generation}.${mac(row.session_id, generation, row.refresh_secret)}`

  function parseRefreshToken (token: string) {
    const parts = token.split('.')
    if (parts.length !== 3 || !UUID.test(parts[0]) || !/^\d{1,9}$/.test(parts[1])) return null
    return { sessionId: parts[0], generation: Number(parts[1]) }
  }

  function issue (account: User, row: Session, generation: number, state: UserState): TokenBundle {
    const profile = toPublicUser(account)
    const expiresAt = row.expires_at.getTime()
    const amr = row.amr.split(' ').filter(Boolean)
    const aal = row.aal === 2 ? 2 : 1
    const access = sign({ sub: account.user_id, sid: row.session_id, type: 'access', amr, aal }, config.ACCESS_TOKEN_EXPIRY_MINUTES * minute, expiresAt)
    const sessionToken = sign({
      sub: account.user_id,
      sid: row.session_id,
      type: 'session',
      pv: state.permissionVersion,
      perms: state.permissions,
      su: state.superAdmin,
      lu: state.lastUpdated,
      profile,
      amr,
      aal
    }, config.SESSION_TOKEN_EXPIRY_MINUTES * minute, expiresAt)
    const idleEnds = Math.min(now() + config.SESSION_IDLE_TIMEOUT_MINUTES * minute, expiresAt)
    return {
      access_token: access.token,
      session_token: sessionToken.token,
      refresh_token: refreshTokenOf(row, generation),
      session_id: row.session_id,
      token_type: 'bearer',
      expires_in: Math.max(0, access.exp - Math.floor(now() / 1000)),
      session_expires_in: Math.max(0, sessionToken.exp - Math.floor(now() / 1000)),
      refresh_expires_in: Math.max(0, Math.floor((idleEnds - now()) / 1000)),
      user: profile
    }
  }

  fastify.decorate('tokens', {
    issue,
    verify,
    parseRefreshToken,
    refreshTokenMatches: (row, generation, token) => safeEqual(token, refreshTokenOf(row, generation))
  } satisfies TokenService)
}, { name: 'tokens', dependencies: ['jwt', 'signing-keys'] })
