import fp from 'fastify-plugin'
import type { FastifyRequest } from 'fastify'
import { AppError } from '../../../schemas/errors.ts'
import { normalizeIdentifier } from '../accounts/users.ts'
import type { ClientContext, TokenBundle } from './sessions.ts'
import { keyOf } from './throttle.ts'

/**
 * Password login, shared by `P/auth/login-with-password` and the OAuth2 `P/token`.
 * Unknown identifier and wrong password take the same path: same status, code and
 * message, and a real Argon2 verification against a dummy hash (SR-7). Attempts
 * count per account before the hash and lock it with a growing back-off (SR-9);
 * the canonical identifier has its own rate limit (SR-10).
 */
export interface LoginService {
  withPassword: (request: FastifyRequest, identifier: string, password: string, method: ClientContext['method']) => Promise<TokenBundle>
  /** Enforces the password length rules before any work (SR-1). */
  assertPasswordLength: (password: string) => void
}

declare module 'fastify' {
  interface FastifyInstance { login: LoginService }
}

export default fp(async (fastify) => {
  const { config, throttle, users, passwords, sessions } = fastify

  function assertPasswordLength (password: string) {
    const length = [...password].length
    if (length > config.PASSWORD_MAX_LENGTH) throw new AppError('PASSWORD_TOO_LONG', { params: { max: config.PASSWORD_MAX_LENGTH } })
  }

  async function withPassword (request: FastifyRequest, identifier: string, password: string, method: ClientContext['method']) {
    assertPasswordLength(password)
    // Every spelling of one address shares its buckets: E.164 for phones, lower case for the rest (SR-10).
    const canonical = (normalizeIdentifier(identifier)?.value ?? identifier.trim()).toLowerCase()
    const identifierHash = keyOf(canonical)
    await throttle.limit('login-id', canonical, config.AUTH_RATE_LIMIT_PER_IDENTIFIER, 60_000)
    const found = await users.findByIdentifier(identifier)
    // Locks key on the account when it exists, else on the identifier: both behave alike.
    const account = found ? `user:${found.user_id}` : `id:${canonical}`
    // Counted before the hash, so a parallel burst is refused past the threshold (SR-9).
    const { lockedForSeconds } = await throttle.reserveAttempt(account)
    const { ok, needsRehash } = await passwords.verify(found?.password ?? null, password)
    if (!found || !ok) {
      await fastify.audit(request.caller, { action: 'login_failed', level: 'warning', userId: null, targetUserId: found?.user_id ?? null, metadata: { method, identifier_hash: identifierHash } })
      if (lockedForSeconds > 0) {
        await fastify.audit(request.caller, { action: 'account_locked', level: 'warning', userId: null, targetUserId: found?.user_id ?? null, metadata: { seconds: lockedForSeconds, identifier_hash: identifierHash } })
      }
      throw new AppError('AUTH_INVALID_CREDENTIALS')
    }
    await throttle.clearFailures(account)
    if (!found.is_active || found.status !== 'active') {
      await fastify.audit(request.caller, { action: 'login_failed', level: 'warning', userId: null, targetUserId: found.user_id, metadata: { method, reason: 'inactive' } })
      throw new AppError('AUTH_ACCOUNT_INACTIVE')
    }
    if (needsRehash) await users.setPasswordHash(found.user_id, await passwords.hash(password))
    const current = await users.recordLogin(found.user_id)
    const bundle = await sessions.create(current, { ip: request.ip, userAgent: request.headers['user-agent'], method })
    await fastify.audit(request.caller, { action: 'login_success', userId: found.user_id, targetUserId: found.user_id, sessionId: bundle.session_id, metadata: { method, rehashed: needsRehash } })
    // Background and failure-proof: a notice never delays or fails the login.
    fastify.notify.loginNotice(request.caller, current, bundle.session_id)
    return bundle
  }

  fastify.decorate('login', { withPassword, assertPasswordLength })
}, { name: 'login', dependencies: ['throttle', 'users', 'passwords', 'sessions', 'activity'] })
