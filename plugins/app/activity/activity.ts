import fp from 'fastify-plugin'
import { Counter, Gauge } from 'prom-client'
import type { ActivityLevel } from '../../../db/schema/index.ts'
import { apiPrefix } from '../../../config.ts'
import { AppError } from '../../../schemas/errors.ts'
import { toAppError } from '../http/errors.ts'
import { METADATA_SECRETS, redactSecrets } from '../http/redact.ts'
import { existingCaller, type Caller } from '../auth/caller.ts'
import { ActivityBuffer, type PendingRow } from './buffer.ts'
import { timeOrderedId } from './ids.ts'
import { parseUserAgent } from './user-agent.ts'
import { insertActivityRows } from './writer.ts'

/*
 * The activity service and its hooks: rows are built here, queued in the buffer
 * (buffer.ts) and written by the writer (writer.ts), the one module that writes
 * activity_log.
 */

/**
 * Audit events (SR-38): one activity_log row per auth event, with actor, target,
 * IP, user agent, request id, session id and a UTC time. Server-side fields come
 * from the request, never from a client body (SR-39). Metadata must never hold a
 * password, OTP or token; callers pass only identifiers and outcomes (and keys
 * that look secret are redacted anyway).
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

export interface RecordOptions {
  security: boolean
  /**
   * Resolve only once the row is written (it is written right away, with whatever
   * else waits), and reject with 503 if it is dropped: for an answer that tells the
   * client its row exists.
   */
  written?: boolean
}

/** What the caller learns about a row it queued (it is written a moment later). */
export interface QueuedActivity { log_id: string, created_at: Date }

export interface ActivityService {
  /** Writes every queued row now; rejects when the database refuses them (they stay queued). */
  flush: () => Promise<void>
  /**
   * Queues a row. `security: true` rows (audit events) are never dropped;
   * others (client events, automatic request rows) may be when the buffer is full.
   */
  record: (caller: Caller | null, event: AuditEvent, options: RecordOptions) => Promise<QueuedActivity>
  /** Rows waiting to be written, and rows dropped since start (buffer full or unwritable). */
  stats: () => { pending: number, dropped: number, written: number }
}

declare module 'fastify' {
  interface FastifyInstance {
    audit: (caller: Caller | null, event: AuditEvent) => Promise<void>
    activity: ActivityService
  }
  interface FastifyContextConfig {
    /**
     * The route writes an audit row of its own (fastify.audit) for what it does, so
     * its 4xx answers get no automatic row unless ACTIVITY_LOG_CLIENT_ERRORS=all.
     */
    audited?: boolean
  }
}

const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])

const levelOfStatus = (status: number): ActivityLevel => status >= 500 ? 'error' : status >= 400 ? 'warning' : 'info'

export default fp(async (fastify) => {
  const { config } = fastify
  const prefix = `${apiPrefix(config)}/`
  const moduleOf = new Map<string, string>()
  /** The URL folder a route lives in (`/api/v1/groups/:id` → `groups`): the module of its automatic rows. */
  const routeModule = (url: string) => {
    let module = moduleOf.get(url)
    if (module === undefined) {
      module = url.startsWith(prefix) ? url.slice(prefix.length).split('/')[0] || 'api' : url.split('/')[1] || 'root'
      moduleOf.set(url, module)
    }
    return module
  }

  // In the app's registry, served at GET /metrics (absent when metrics are off).
  const registry = config.METRICS_ENABLED && fastify.hasDecorator('metrics') ? fastify.metrics.registry : undefined
  const droppedCounter = registry && new Counter({
    name: 'activity_log_rows_dropped_total',
    help: 'Activity rows dropped: buffer full (request and client rows only, never audit rows) or refused by the database',
    labelNames: ['reason'],
    registers: [registry]
  })
  if (registry) {
    // eslint-disable-next-line no-new
    new Gauge({
      name: 'activity_log_rows_pending',
      help: 'Activity rows waiting to be written',
      registers: [registry],
      collect () { this.set(buffer.pending) }
    })
  }

  const buffer = new ActivityBuffer({
    write: async (rows) => {
      // Completed here, off the request path: parsing a user agent costs a little (docs/performance.md).
      for (const row of rows) if (row.user_agent && row.device === null && row.browser === null && row.os === null) Object.assign(row, parseUserAgent(row.user_agent))
      await insertActivityRows(fastify.db, rows)
    },
    capacity: config.ACTIVITY_BUFFER_MAX,
    batchSize: Math.min(config.ACTIVITY_BATCH_SIZE, config.ACTIVITY_BUFFER_MAX),
    intervalMs: config.ACTIVITY_FLUSH_INTERVAL_MS,
    onDrop: (count, reason) => droppedCounter?.inc({ reason }, count),
    log: fastify.log
  })
  buffer.start()

  function build (caller: Caller | null, event: AuditEvent): PendingRow['row'] {
    const auth = caller?.actor
    const now = fastify.now()
    return {
      log_id: timeOrderedId(now),
      level: event.level ?? 'info',
      action: event.action,
      module: event.module ?? 'auth',
      message: event.message ?? null,
      user_id: event.userId !== undefined ? event.userId : (auth?.userId ?? null),
      target_user_id: event.targetUserId ?? null,
      session_id: event.sessionId !== undefined ? event.sessionId : (auth?.sessionId ?? null),
      ip_address: caller?.ip ?? null,
      user_agent: caller?.userAgent ?? null,
      device: null,
      browser: null,
      os: null,
      endpoint: caller?.endpoint ?? null,
      method: caller?.method ?? null,
      status_code: event.statusCode ?? null,
      request_id: caller?.requestId ?? null,
      duration_ms: null,
      metadata: event.metadata ? redactSecrets(event.metadata, METADATA_SECRETS) as Record<string, unknown> : null,
      created_at: new Date(now)
    }
  }

  async function record (caller: Caller | null, event: AuditEvent, options: RecordOptions): Promise<QueuedActivity> {
    const pending: PendingRow = { row: build(caller, event), security: options.security, taken: false }
    const written = options.written
      ? new Promise<void>((resolve, reject) => {
        pending.settle = (dropped) => dropped ? reject(new AppError('SERVICE_UNAVAILABLE', { cause: dropped })) : resolve()
      })
      : undefined
    written?.catch(() => {}) // awaited below; a rejection meanwhile is not "unhandled"
    if (caller) (caller.auditRows ??= []).push(pending)
    await buffer.add(pending)
    if (written) {
      // The database being down keeps the row queued: the client hears 503 rather than waiting for it.
      await Promise.race([written, buffer.flush()])
      await written
    }
    return { log_id: pending.row.log_id, created_at: pending.row.created_at as Date }
  }

  fastify.decorate('audit', async (caller: Caller | null, event: AuditEvent) => {
    await record(caller, event, { security: true })
  })
  fastify.decorate('activity', {
    flush: () => buffer.flush(),
    record,
    stats: () => ({ pending: buffer.pending, dropped: buffer.dropped, written: buffer.written })
  } satisfies ActivityService)

  /**
   * Whether an answer gets its automatic row: 2xx, 3xx and 5xx always; 4xx per
   * ACTIVITY_LOG_CLIENT_ERRORS. A route with its own audit row (`config.audited`)
   * already records its refusals that matter (login_failed, reauth_failed, ...);
   * its validation and token errors would otherwise fill the caller's activity.
   */
  const clientErrors = config.ACTIVITY_LOG_CLIENT_ERRORS
  const rowFor = (audited: boolean | undefined, status: number) =>
    status < 400 || status >= 500 || clientErrors === 'all' || (clientErrors === 'unaudited' && audited !== true)

  /** Once per route: it writes audit rows but does not say so, so its 4xx answers still get automatic rows. */
  const warned = new Set<string>()
  const undeclared = (url: string | undefined) => {
    if (url === undefined || warned.has(url)) return
    warned.add(url)
    fastify.log.warn({ route: url }, 'route writes audit rows without config.audited: true (ACTIVITY_LOG_CLIENT_ERRORS)')
  }

  // The error code of a failed request, for the metadata of its automatic row.
  const errorCodes = new WeakMap<object, string>()
  fastify.addHook('onError', async (request, _reply, error) => {
    errorCodes.set(request, toAppError(error).code)
  })

  fastify.addHook('onResponse', (request, reply, done) => {
    const own = existingCaller(request)?.auditRows as PendingRow[] | null | undefined
    if (own) {
      if (request.routeOptions.config.audited !== true && MUTATING.has(request.method)) undeclared(request.routeOptions.url)
      // Audit rows were queued mid-request: they get the outcome while they still wait.
      for (const p of own) {
        if (p.taken) continue
        p.row.status_code ??= reply.statusCode
        p.row.duration_ms = Math.round(reply.elapsedTime)
      }
    } else if (config.ACTIVITY_LOG_REQUESTS && MUTATING.has(request.method) && !request.is404 && rowFor(request.routeOptions.config.audited, reply.statusCode)) {
      const endpoint = request.routeOptions.url
      if (endpoint) automaticRow(request.caller, endpoint, request.params, errorCodes.get(request), reply.statusCode, reply.elapsedTime)
    }
    done()
  })

  function automaticRow (caller: Caller, endpoint: string, params: unknown, error: string | undefined, statusCode: number, elapsed: number) {
    // Never the body (it may hold passwords or codes): path parameters are ids, the error a code.
    const named = params as Record<string, unknown> | undefined
    const metadata = {
      ...(named && Object.keys(named).length > 0 ? { params: named } : {}),
      ...(error ? { error } : {})
    }
    const row = build(caller, {
      action: 'request',
      module: routeModule(endpoint),
      level: levelOfStatus(statusCode),
      statusCode,
      metadata: Object.keys(metadata).length > 0 ? metadata : undefined
    })
    row.duration_ms = Math.round(elapsed)
    buffer.add({ row, security: false, taken: false }).catch(() => { /* non-audit rows never wait and never fail */ })
  }

  // Graceful stop (SR-42): in-flight requests are done when onClose runs, and the database closes after us.
  fastify.addHook('onClose', async () => {
    await buffer.close()
  })
}, { name: 'activity', dependencies: ['db', 'metrics', 'request-caller'] })
