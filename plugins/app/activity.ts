import fp from 'fastify-plugin'
import type { FastifyRequest } from 'fastify'
import { activityLog } from '../../db/schema/index.ts'

/**
 * Audit events (SR-38): one activity_log row per auth event, with actor, target,
 * IP, user agent, request id, session id and a UTC time. Server-side fields come
 * from the request, never from a client body (SR-39). Metadata must never hold a
 * password, OTP or token; callers pass only identifiers and outcomes.
 */
export interface AuditEvent {
  action: string
  module?: string
  level?: 'debug' | 'info' | 'warning' | 'error' | 'critical'
  message?: string
  /** The actor; defaults to the authenticated user. */
  userId?: string | null
  targetUserId?: string | null
  sessionId?: string | null
  statusCode?: number
  metadata?: Record<string, unknown>
}

declare module 'fastify' {
  interface FastifyInstance {
    audit: (request: FastifyRequest | null, event: AuditEvent) => Promise<void>
  }
}

export default fp(async (fastify) => {
  fastify.decorate('audit', async (request: FastifyRequest | null, event: AuditEvent) => {
    const auth = request?.auth
    await fastify.db.insert(activityLog).values({
      level: event.level ?? 'info',
      action: event.action,
      module: event.module ?? 'auth',
      message: event.message ?? null,
      user_id: event.userId !== undefined ? event.userId : (auth?.userId ?? null),
      target_user_id: event.targetUserId ?? null,
      session_id: event.sessionId !== undefined ? event.sessionId : (auth?.sessionId ?? null),
      ip_address: request?.ip ?? null,
      user_agent: request?.headers['user-agent']?.slice(0, 512) ?? null,
      endpoint: request?.routeOptions.url ?? null,
      method: request?.method ?? null,
      status_code: event.statusCode ?? null,
      request_id: request ? String(request.id) : null,
      metadata: event.metadata ?? null,
      created_at: new Date(fastify.now())
    })
  })
}, { name: 'activity', dependencies: ['db'] })
