import fp from 'fastify-plugin'
import type { FastifyRequest } from 'fastify'
import { AppError } from '../../../schemas/errors.ts'
import type { Assurance, TokenType, VerifiedToken } from './tokens.ts'
import type { UserState } from './user-state.ts'

/**
 * Authenticates every request to a non-public route, then authorizes it against
 * the permissions its config names (deny by default, SR-24). Credentials come
 * from `Authorization: Bearer <access|session>` or `X-Session-Token: <session>`,
 * never from the query string (SR-17). A super admin passes every permission
 * check, which only an active account can reach (SR-28).
 *
 * A public route declared `config: { public: true, auth: 'optional' }` accepts a
 * credential without requiring one: when one is presented and valid the request is
 * authenticated (`request.auth`, `caller.actor`); when it is refused, the refusal is
 * kept (`request.authFailure`) for a service that needs a signed-in caller to throw
 * (caller.ts `signedIn`), and the route otherwise answers as for an anonymous caller.
 */
export interface AuthContext {
  userId: string
  sessionId: string
  tokenType: TokenType
  /** The verified token the request presented. */
  token: VerifiedToken
  state: UserState
  permissions: readonly string[]
  superAdmin: boolean
  /** The session's authentication methods, e.g. ["pwd"], ["otp"], ["pwd", "totp"], ["webauthn"]. */
  amr: Assurance['amr']
  /** The session's assurance level: 2 after a second factor or a passkey. */
  aal: Assurance['aal']
}

declare module 'fastify' {
  interface FastifyRequest {
    auth?: AuthContext
    /** Authentication started in onRequest, settled in preParsing (then null). */
    authPending: Promise<AuthContext> | null
    /** Optional-auth routes: why the presented credential was refused; null when none was presented or it was accepted. */
    authFailure: Error | null
  }
  interface FastifyContextConfig {
    /**
     * Reachable by a member of a `require_mfa` group who has no factor yet (MFA
     * enrolment, logout, token-info); every other signed-in route answers
     * MFA_ENROLMENT_REQUIRED to them.
     */
    allowWithoutMfa?: boolean
  }
}

const QUERY_CREDENTIALS = ['token', 'access_token', 'session_token', 'refresh_token', 'jwt']

export function hasPermissions (auth: AuthContext, required: readonly string[]) {
  return auth.superAdmin || required.every((p) => auth.permissions.includes(p))
}

export default fp(async (fastify) => {
  function readCredential (request: FastifyRequest): { token: string, from: 'authorization' | 'x-session-token' } | undefined {
    const query = request.query as Record<string, unknown> | undefined
    if (query && QUERY_CREDENTIALS.some((k) => k in query)) throw new AppError('AUTH_INVALID_TOKEN', { details: { reason: 'tokens are not accepted in the query string' } })
    const authorization = request.headers.authorization
    if (authorization !== undefined) {
      const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization)
      if (!match) throw new AppError('AUTH_INVALID_TOKEN', { details: { reason: 'expected Authorization: Bearer <token>' } })
      return { token: match[1], from: 'authorization' }
    }
    const sessionHeader = request.headers['x-session-token']
    if (typeof sessionHeader === 'string' && sessionHeader.length > 0) return { token: sessionHeader.trim(), from: 'x-session-token' }
    return undefined
  }

  /** Verifies the request's credential and loads its session state; 401 on any doubt. */
  async function authenticate (request: FastifyRequest): Promise<AuthContext> {
    const credential = readCredential(request)
    if (!credential) throw new AppError('AUTH_REQUIRED')
    const token = await fastify.tokens.verify(credential.token)
    if (credential.from === 'x-session-token' && token.type !== 'session') throw new AppError('AUTH_INVALID_TOKEN')
    const state = await fastify.authState.check(token)
    // A session token's permissions hold while the user's permission version is unchanged (SR-22).
    const permissions = token.type === 'session' && token.permissionVersion === state.permissionVersion && token.permissions ? token.permissions : state.permissions
    return { userId: token.userId, sessionId: token.sessionId, tokenType: token.type, token, state, permissions, superAdmin: state.superAdmin, amr: [...token.amr], aal: token.aal }
  }

  fastify.decorate('authenticate', authenticate)

  // Authentication starts in onRequest and is awaited in preParsing. In between, the
  // route's rate-limit hook sends its Redis command; with ioredis auto-pipelining
  // (plugins/external/store.ts) the state MGET and the rate-limit script leave in
  // one write and come back in one round trip. Both run before any body is read.
  const noop = () => {}
  fastify.decorateRequest('authPending', null)
  fastify.decorateRequest('authFailure', null)
  fastify.addHook('onRequest', (request, _reply, done) => {
    const config = request.routeOptions.config
    if ((config.public && config.auth !== 'optional') || request.is404) return done()
    const pending = authenticate(request)
    pending.catch(noop) // settled in preParsing; this only keeps an early rejection from being "unhandled"
    request.authPending = pending
    done()
  })
  fastify.addHook('preParsing', (request, _reply, payload, done) => {
    const pending = request.authPending
    // undefined on routes of contexts made before this decorator (the docs'): those are public.
    if (pending == null) return done(null, payload)
    request.authPending = null
    pending.then((auth) => {
      request.auth = auth
      request.userLanguage = auth.state.language
      if (auth.state.mfaEnrolmentRequired && request.routeOptions.config.allowWithoutMfa !== true) return done(new AppError('MFA_ENROLMENT_REQUIRED'))
      const required = request.routeOptions.config.permissions ?? []
      if (required.length > 0 && !hasPermissions(auth, required)) return done(new AppError('FORBIDDEN', { details: { required } }))
      done(null, payload)
    }, (error: Error) => {
      if (request.routeOptions.config.auth !== 'optional') return done(error)
      // No credential at all is an anonymous request; a refused one is kept for the service to throw.
      if (!(error instanceof AppError && error.code === 'AUTH_REQUIRED')) request.authFailure = error
      done(null, payload)
    })
  })
}, { name: 'auth', dependencies: ['access', 'errors', 'tokens', 'auth-state'] })

declare module 'fastify' {
  interface FastifyInstance {
    authenticate: (request: FastifyRequest) => Promise<AuthContext>
  }
}
