import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { Envelope, StrictObject } from '../../../schemas/envelope.ts'
import { AppError } from '../../../schemas/errors.ts'
import { LoginBody, LoginResultSchema, LogoutScope, RefreshBody, SessionSchema, TokenBundleSchema, TokenInfoSchema } from '../../../schemas/auth.ts'
import type { VerifiedToken } from '../../../plugins/app/auth/tokens.ts'
import { needsSecondFactor } from '../../../plugins/app/auth/login.ts'
import { toSessionView } from '../../../plugins/app/auth/sessions.ts'
import { bodyOptional } from '../../../plugins/app/http/envelope.ts'
import { ref } from '../../../schemas/ref.ts'

const tags = ['auth']
const iso = (seconds: number) => new Date(seconds * 1000).toISOString()

const auth: FastifyPluginAsyncTypebox = async (fastify) => {
  const { config } = fastify
  const perIp = { max: config.AUTH_RATE_LIMIT_PER_IP, timeWindow: 60_000 }

  fastify.post('/login-with-password', {
    config: { audited: true, public: true, rateLimit: perIp },
    schema: {
      operationId: 'loginWithPassword',
      tags,
      summary: 'Log in with an email, phone number or user name and a password',
      description: 'Answers the tokens of a new session; for an account with a second factor, an MFA ticket instead (`mfa_required`, ' +
        'complete it with P/auth/mfa/challenge). Failures count towards the account\'s lockout (429 with Retry-After).',
      body: ref(LoginBody),
      response: { 200: Envelope(ref(LoginResultSchema)) }
    }
  }, async (request, reply) => {
    const { identifier, email, phone_number: phone, user_name: userName, password, device_name: deviceName } = request.body
    const id = identifier ?? email ?? phone ?? userName
    if (!id) throw new AppError('VALIDATION_ERROR', { details: [{ field: 'body/identifier', message: 'identifier (or email, phone_number, user_name) is required' }] })
    const outcome = await fastify.login.withPassword(request.caller, id, password, 'password', { deviceName })
    return reply.ok(outcome, { message: needsSecondFactor(outcome) ? 'success.mfa_required' : 'success.login' })
  })

  fastify.post('/refresh-token', {
    config: { audited: true, public: true, rateLimit: perIp },
    schema: {
      operationId: 'refreshToken',
      tags,
      summary: 'Rotate the refresh token and get new access and session tokens',
      description: 'Each refresh token works once. Replaying a used one after a short grace window revokes the whole session.',
      body: ref(RefreshBody),
      response: { 200: Envelope(ref(TokenBundleSchema)) }
    }
  }, async (request, reply) => {
    const { refresh_token: token } = request.body
    try {
      const { bundle, userId, sessionId, reused } = await fastify.sessions.refresh(token, { ip: request.ip })
      await fastify.audit(request.caller, { action: 'token_refresh', userId, targetUserId: userId, sessionId, metadata: { within_grace: reused } })
      return reply.ok(bundle, { message: 'success.token_refreshed' })
    } catch (error) {
      if (error instanceof AppError && error.code === 'AUTH_REFRESH_REUSED') {
        const { userId, sessionId } = error as AppError & { userId: string, sessionId: string }
        await fastify.audit(request.caller, { action: 'refresh_token_reuse', level: 'critical', userId, targetUserId: userId, sessionId, message: 'A rotated refresh token was replayed; the session was revoked' })
      }
      throw error
    }
  })

  fastify.post('/logout', {
    config: { audited: true, permissions: [], allowWithoutMfa: true },
    preValidation: bodyOptional,
    schema: {
      operationId: 'logout',
      tags,
      summary: 'Log out this session, the other sessions, or all of them',
      querystring: Type.Object({ scope: Type.Optional(LogoutScope) }),
      body: StrictObject({ scope: Type.Optional(LogoutScope) }),
      response: { 200: Envelope(Type.Object({ scope: LogoutScope, revoked_sessions: Type.Integer() })) }
    }
  }, async (request, reply) => {
    const auth = request.auth!
    const scope = request.body.scope ?? request.query.scope ?? 'current'
    let revoked = 0
    if (scope === 'current') revoked = (await fastify.sessions.revoke(auth.sessionId, 'logout')) ? 1 : 0
    else if (scope === 'others') revoked = await fastify.sessions.revokeAllForUser(auth.userId, 'logout_others', { except: auth.sessionId })
    else revoked = await fastify.sessions.revokeAllForUser(auth.userId, 'logout_all')
    await fastify.audit(request.caller, { action: 'logout', targetUserId: auth.userId, metadata: { scope, revoked_sessions: revoked } })
    return reply.ok({ scope, revoked_sessions: revoked }, { message: 'success.logout' })
  })

  const describe = async (token: VerifiedToken, permissions: readonly string[]) => {
    const row = await fastify.sessions.findActive(token.userId, token.sessionId)
    const idleEnds = row ? Math.min(row.last_used_at.getTime() + config.SESSION_IDLE_TIMEOUT_MINUTES * 60_000, row.expires_at.getTime()) : undefined
    return {
      active: row !== undefined,
      token_type: token.type,
      user_id: token.userId,
      session_id: token.sessionId,
      issued_at: iso(token.issuedAt),
      expires_at: iso(token.expiresAt),
      ...(row ? { session_expires_at: row.expires_at.toISOString(), refresh_idle_expires_at: new Date(idleEnds!).toISOString() } : {}),
      permissions: [...permissions]
    }
  }

  fastify.get('/token-info', {
    config: { permissions: [], allowWithoutMfa: true },
    schema: { operationId: 'getTokenInfo', tags, summary: 'What the presented token says, and when each token of its session expires', response: { 200: Envelope(ref(TokenInfoSchema)) } }
  }, async (request, reply) => {
    const auth = request.auth!
    return reply.ok(await describe(auth.token, auth.permissions))
  })

  fastify.post('/token-info', {
    config: { permissions: [], allowWithoutMfa: true },
    preValidation: bodyOptional,
    schema: {
      operationId: 'inspectToken',
      tags,
      summary: 'Inspect a token of your own (access, session or refresh); without a body, the presented one',
      body: StrictObject({ token: Type.Optional(Type.String({ minLength: 10, maxLength: 8192 })) }),
      response: { 200: Envelope(ref(TokenInfoSchema)) }
    }
  }, async (request, reply) => {
    const auth = request.auth!
    const token = request.body.token
    if (!token) return reply.ok(await describe(auth.token, auth.permissions))
    if (fastify.tokens.parseRefreshToken(token)) {
      // Active only when the MAC is right too, not just the session and generation.
      const row = await fastify.sessions.findByRefreshToken(auth.userId, token)
      return reply.ok(row
        ? { active: true, token_type: 'refresh' as const, user_id: auth.userId, session_id: row.session_id, session_expires_at: row.expires_at.toISOString() }
        : { active: false })
    }
    let presented: VerifiedToken
    try {
      presented = await fastify.tokens.verify(token)
    } catch {
      return reply.ok({ active: false })
    }
    if (presented.userId !== auth.userId) return reply.ok({ active: false })
    return reply.ok(await describe(presented, presented.type === 'session' && presented.permissions ? presented.permissions : auth.permissions))
  })

  fastify.get('/sessions', {
    config: { permissions: [] },
    schema: { operationId: 'listSessions', tags, summary: 'Your active sessions (devices)', response: { 200: Envelope(Type.Array(ref(SessionSchema))) } }
  }, async (request, reply) => {
    const auth = request.auth!
    const rows = await fastify.sessions.listActive(auth.userId)
    return reply.ok(rows.map((s) => toSessionView(s, auth.sessionId)))
  })

  fastify.delete('/sessions/:session_id', {
    config: { audited: true, permissions: [] },
    schema: {
      operationId: 'revokeSession',
      tags,
      summary: 'Revoke one of your sessions',
      params: Type.Object({ session_id: Type.String({ format: 'uuid' }) }),
      response: { 200: Envelope(Type.Object({ session_id: Type.String(), revoked: Type.Literal(true) })) }
    }
  }, async (request, reply) => {
    const auth = request.auth!
    const { session_id: sessionId } = request.params
    const owned = await fastify.sessions.findActive(auth.userId, sessionId) !== undefined
    if (!owned) throw new AppError('NOT_FOUND')
    await fastify.sessions.revoke(sessionId, 'revoked_by_user')
    await fastify.audit(request.caller, { action: 'session_revoked', targetUserId: auth.userId, metadata: { revoked_session_id: sessionId } })
    return reply.ok({ session_id: sessionId, revoked: true as const }, { message: 'success.session_revoked' })
  })
}

export default auth
