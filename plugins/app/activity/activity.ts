import fp from 'fastify-plugin'
import type { FastifyBaseLogger } from 'fastify'
import { Counter, Gauge } from 'prom-client'
import { UAParser } from 'ua-parser-js'
import { randomFillSync } from 'node:crypto'
import { v7 as uuidv7 } from 'uuid'
import { SerializerSelector } from '@fastify/fast-json-stringify-compiler'
import { getTableColumns, sql } from 'drizzle-orm'
import { activityLog, type ActivityLevel, type NewActivityLog } from '../../../db/schema/index.ts'
import type { Database } from '../../../db/client.ts'
import { AppError } from '../../../schemas/errors.ts'
import { isDependencyDown, toAppError } from '../http/errors.ts'
import { existingCaller, type Caller } from '../auth/caller.ts'

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
}

export interface PendingRow {
  row: NewActivityLog & { log_id: string }
  security: boolean
  /** Taken out of the buffer to be written: no longer updated by its request. */
  taken: boolean
  /** Told once the row is written (no argument) or dropped (the reason), for callers that answer only then. */
  settle?: (dropped?: Error) => void
}

// ---------------------------------------------------------------------------
// The buffer: bounded, batched, retried; pure enough to be tested on its own.
// ---------------------------------------------------------------------------

export interface BufferOptions {
  /** Inserts rows; must be idempotent (rows carry their own primary key). */
  write: (rows: NewActivityLog[]) => Promise<void>
  capacity: number
  batchSize: number
  intervalMs: number
  onDrop: (count: number, reason: 'buffer_full' | 'unwritable') => void
  log: Pick<FastifyBaseLogger, 'warn' | 'error' | 'info'>
  /** Longest wait between two attempts while the database keeps failing. */
  maxBackoffMs?: number
  now?: () => number
}

const droppable = (p: PendingRow) => !p.security

/**
 * Rows wait here and are written in batches off the request path: every
 * `intervalMs`, or as soon as `batchSize` rows wait. A failed write keeps its
 * rows and is retried with a growing pause. The buffer holds at most `capacity`
 * rows: when full, the oldest non-audit row at info level goes first, then the
 * oldest non-audit row of any level; audit rows are never dropped — an audit
 * row that finds the buffer full of audit rows waits for a write to make room,
 * and fails (503) only if the database cannot take them, so the request that
 * caused it fails as it would have with an inline insert.
 */
export class ActivityBuffer {
  private rows: PendingRow[] = []
  private running: Promise<void> | null = null
  private timer: NodeJS.Timeout | null = null
  private scheduled = false
  private failures = 0
  private retryAt = 0
  private closed = false
  private readonly now: () => number
  written = 0
  dropped = 0

  constructor (private readonly options: BufferOptions) {
    this.now = options.now ?? Date.now
  }

  get pending () { return this.rows.length }

  start () {
    this.timer = setInterval(() => this.tick(), this.options.intervalMs)
    this.timer.unref()
  }

  async add (pending: PendingRow): Promise<void> {
    if (this.closed) {
      // After the final flush (a response finishing during shutdown): write it alone.
      await this.writeBatch([pending]).catch((error) => this.lose([pending], error))
      return
    }
    if (this.rows.length >= this.options.capacity && !this.evictFor(pending)) {
      if (!pending.security) {
        this.dropRows([pending], 'buffer_full')
        return
      }
      await this.makeRoom()
    }
    this.rows.push(pending)
    if (this.rows.length >= this.options.batchSize || pending.settle) this.schedule()
  }

  /** Frees one slot by dropping a non-audit row; false when only audit rows are left. */
  private evictFor (incoming: PendingRow): boolean {
    let victim = this.rows.findIndex((p) => droppable(p) && (p.row.level === 'info' || p.row.level === 'debug'))
    if (victim < 0 && incoming.security) victim = this.rows.findIndex(droppable)
    if (victim < 0) return false
    this.dropRows(this.rows.splice(victim, 1), 'buffer_full')
    return true
  }

  private async makeRoom () {
    while (this.rows.length >= this.options.capacity) {
      try {
        await this.flush()
      } catch (error) {
        throw new AppError('SERVICE_UNAVAILABLE', { cause: error })
      }
    }
  }

  private dropRows (rows: PendingRow[], reason: 'buffer_full' | 'unwritable') {
    this.dropped += rows.length
    this.options.onDrop(rows.length, reason)
    for (const p of rows) p.settle?.(new Error(`activity row dropped: ${reason}`))
  }

  private wrote (rows: PendingRow[]) {
    this.written += rows.length
    for (const p of rows) p.settle?.()
  }

  private schedule () {
    if (this.scheduled || this.running) return
    this.scheduled = true
    setImmediate(() => {
      this.scheduled = false
      this.tick()
    })
  }

  private tick () {
    if (this.running || this.rows.length === 0 || this.now() < this.retryAt) return
    this.flush().catch(() => { /* logged in run(); the rows stay queued */ })
  }

  /** Writes every queued row; concurrent callers share the same run. */
  flush (): Promise<void> {
    this.running ??= this.run().finally(() => { this.running = null })
    return this.running
  }

  private async run () {
    while (this.rows.length > 0) {
      const batch = this.rows.splice(0, this.options.batchSize)
      for (const p of batch) p.taken = true
      try {
        await this.writeBatch(batch)
      } catch (error) {
        this.rows.unshift(...batch)
        this.trim()
        this.failures++
        this.retryAt = this.now() + Math.min(this.options.intervalMs * 2 ** this.failures, this.options.maxBackoffMs ?? 30_000)
        if (this.failures === 1) this.options.log.warn({ err: error, pending: this.rows.length }, 'activity rows could not be written; retrying')
        throw error
      }
      if (this.failures > 0) this.options.log.info({ after: this.failures }, 'activity rows are written again')
      this.failures = 0
      this.retryAt = 0
    }
  }

  /** After a failed write put its batch back, the buffer may exceed its capacity by droppable rows. */
  private trim () {
    while (this.rows.length > this.options.capacity) {
      const victim = this.rows.findIndex(droppable)
      if (victim < 0) return
      this.dropRows(this.rows.splice(victim, 1), 'buffer_full')
    }
  }

  /**
   * Inserts a batch. A batch refused because of a row's content (a row naming a
   * user deleted meanwhile, say) is retried row by row, so one bad row cannot
   * block or take down the others.
   */
  private async writeBatch (batch: PendingRow[]) {
    const rows = batch.map((p) => p.row)
    try {
      await this.options.write(rows)
      this.wrote(batch)
      return
    } catch (error) {
      if (isDependencyDown(error) || !isRowError(error)) throw error
      if (batch.length === 1) return this.writeAlone(batch[0], error as Error)
    }
    for (const p of batch) {
      try {
        await this.options.write([p.row])
        this.wrote([p])
      } catch (error) {
        if (isDependencyDown(error) || !isRowError(error)) throw error
        await this.writeAlone(p, error as Error)
      }
    }
  }

  /**
   * A row the database refused on its own. It is written in a repaired form rather
   * than dropped: without the link to an actor deleted meanwhile, then without its
   * metadata (noting why). Only a row refused even so is dropped, logged and counted.
   */
  private async writeAlone (p: PendingRow, error: Error) {
    const repairs: Array<(row: PendingRow['row']) => PendingRow['row']> = []
    // The actor was deleted between the event and the write: keep the event without the link.
    if (pgCode(error) === '23503' && p.row.user_id) repairs.push((row) => ({ ...row, user_id: null, metadata: { ...row.metadata, deleted_actor_id: row.user_id } }))
    repairs.push((row) => ({
      ...row,
      status_code: int32(row.status_code),
      duration_ms: int32(row.duration_ms),
      metadata: { metadata_unwritable: pgCode(error) ?? error.name, ...(row.user_id === null && p.row.user_id ? { deleted_actor_id: p.row.user_id } : {}) }
    }))
    let row = p.row
    for (const repair of repairs) {
      row = repair(row)
      try {
        await this.options.write([row])
        this.options.log.warn({ err: error, log_id: row.log_id, action: row.action }, 'an activity row was refused by the database and written repaired')
        this.wrote([p])
        return
      } catch (retryError) {
        if (isDependencyDown(retryError) || !isRowError(retryError)) throw retryError
        error = retryError as Error
      }
    }
    this.options.log.error({ err: error, row: { ...p.row, metadata: undefined } }, 'an activity row was refused by the database and dropped')
    this.dropRows([p], 'unwritable')
  }

  /** Last resort when the database is gone at shutdown: the rows go to the log instead of vanishing. */
  private lose (batch: PendingRow[], error: unknown) {
    this.options.log.error({ err: error, rows: batch.map((p) => p.row) }, 'activity rows could not be written before exit; they are in this log line')
    this.dropRows(batch, 'unwritable')
  }

  /** Stops the timer and writes everything, retrying briefly; what still fails goes to the log. */
  async close (attempts = 3) {
    if (this.timer) clearInterval(this.timer)
    for (let attempt = 1; this.rows.length > 0 || this.running; attempt++) {
      try {
        await this.flush()
      } catch (error) {
        if (attempt >= attempts) {
          this.lose(this.rows.splice(0), error)
          break
        }
        await new Promise((resolve) => setTimeout(resolve, 100 * attempt))
      }
    }
    this.closed = true
  }
}

const int32 = (n: number | null | undefined) => typeof n === 'number' && Number.isInteger(n) && Math.abs(n) < 2 ** 31 ? n : null

/** The PostgreSQL SQLSTATE of an error (postgres.js and PGlite, possibly wrapped by Drizzle). */
function pgCode (error: unknown): string | undefined {
  for (let e = error as { code?: unknown, cause?: unknown } | undefined, depth = 0; e && depth < 5; e = e.cause as typeof e, depth++) {
    if (typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code)) return e.code
  }
  return undefined
}

/**
 * Errors caused by a row's content (data 22, integrity 23, program limits 54 such as
 * a too deeply nested value; or a row that could not even be serialized), as
 * opposed to the database or the connection.
 */
const isRowError = (error: unknown) => error instanceof UnserializableRowsError || /^(22|23|54)/.test(pgCode(error) ?? '')

/** The rows could not be turned into the batch parameter (a value nested too deeply for JSON.stringify, say). */
export class UnserializableRowsError extends Error {
  constructor (cause: unknown) {
    super('activity rows could not be serialized', { cause })
    this.name = 'UnserializableRowsError'
  }
}

// ---------------------------------------------------------------------------
// Building rows
// ---------------------------------------------------------------------------

const SECRET_KEY = /(^|[_-])(password|passwd|passcode|otp|code|token|secret|authorization|cookie|api[_-]?key)$/i
const JWT_LIKE = /^ey[A-Za-z0-9_-]{8,}\.ey[A-Za-z0-9_-]{8,}\./

/** Defence in depth for SR-38: keys that name secrets and values shaped like tokens never reach a row. */
export function scrubMetadata (value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return JWT_LIKE.test(value) ? '[redacted]' : value
  if (value === null || typeof value !== 'object' || depth > 4) return value
  if (Array.isArray(value)) return value.map((v) => scrubMetadata(v, depth + 1))
  const out: Record<string, unknown> = {}
  for (const [key, v] of Object.entries(value)) out[key] = SECRET_KEY.test(key) ? '[redacted]' : scrubMetadata(v, depth + 1)
  return out
}

export interface ParsedAgent { device: string | null, browser: string | null, os: string | null }

const agentCache = new Map<string, ParsedAgent>()
const AGENT_CACHE_MAX = 500

/** device type / browser / OS of a user agent (ua-parser-js), remembered: agents repeat a lot. */
export function parseUserAgent (userAgent: string | null | undefined): ParsedAgent {
  if (!userAgent) return { device: null, browser: null, os: null }
  const known = agentCache.get(userAgent)
  if (known) return known
  const { browser, os, device } = UAParser(userAgent)
  // API clients (curl, okhttp, SDKs) are no browsers, but their product token says what they are.
  const product = /^([A-Za-z][\w.-]*)\/(\d+)/.exec(userAgent)
  const parsed: ParsedAgent = {
    device: device.type ?? (os.name ? 'desktop' : null),
    browser: browser.name ? [browser.name, browser.major].filter(Boolean).join(' ') : product && product[1] !== 'Mozilla' ? `${product[1]} ${product[2]}` : null,
    os: os.name ? [os.name, os.version].filter(Boolean).join(' ') : null
  }
  if (agentCache.size >= AGENT_CACHE_MAX) agentCache.delete(agentCache.keys().next().value!)
  agentCache.set(userAgent, parsed)
  return parsed
}

const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])

const levelOfStatus = (status: number): ActivityLevel => status >= 500 ? 'error' : status >= 400 ? 'warning' : 'info'

/**
 * Row ids: UUIDv7 (the uuid package's layout), time-ordered, so each row's
 * primary-key entry lands next to the previous one instead of on a random page of a
 * large index (on 1,000,000 rows, inserts cost PostgreSQL about a quarter less than
 * with random v4 ids). The package asks the system for 16 random bytes per id
 * (crypto.getRandomValues, about 2 µs); here they come from a pool refilled 4 KiB at
 * a time. Ids made in the same millisecond count up from a random start (the
 * package's own monotonic rule), so they stay unique and in the order they were made.
 */
const randomPool = new Uint8Array(4096)
let randomNext = randomPool.length
const idClock = { msecs: -Infinity, seq: 0 }

export function timeOrderedId (now = Date.now()): string {
  if (randomNext === randomPool.length) {
    randomFillSync(randomPool)
    randomNext = 0
  }
  const random = randomPool.subarray(randomNext, randomNext += 16)
  if (now > idClock.msecs) {
    idClock.msecs = now
    // 31 random bits: room to count up within the millisecond.
    idClock.seq = ((random[6] & 0x7f) << 24) | (random[7] << 16) | (random[8] << 8) | random[9]
  } else {
    idClock.seq = (idClock.seq + 1) | 0
    if (idClock.seq === 0) idClock.msecs++
  }
  return uuidv7({ random, msecs: idClock.msecs, seq: idClock.seq })
}

const activityColumns = Object.values(getTableColumns(activityLog))
const activityColumnList = sql.join(activityColumns.map((column) => sql.identifier(column.name)), sql`, `)
const activityRecordType = sql.raw(activityColumns.map((column) => `"${column.name}" ${column.getSQLType()}`).join(', '))

/** JSON schema of one row, from the table's columns: absent and null fields both become NULL. */
function columnSchema (column: (typeof activityColumns)[number]): Record<string, unknown> {
  switch (column.dataType) {
    case 'date': return { type: 'string', format: 'date-time' }
    case 'number': return { type: ['integer', 'null'] }
    case 'json': return {}
    default: return { type: ['string', 'null'] }
  }
}

/**
 * The batch parameter, serialized by a compiled serializer (fast-json-stringify, as
 * Fastify does for responses) from the table's column types: about half the time of
 * JSON.stringify per row, which matters at one row per mutating request.
 */
const serializeRows = SerializerSelector()({}, {})({
  schema: { type: 'array', items: { type: 'object', properties: Object.fromEntries(activityColumns.map((column) => [column.name, columnSchema(column)])) } },
  method: 'INSERT',
  url: 'activity_log',
  httpStatus: '200'
}) as (rows: readonly NewActivityLog[]) => string

// What PostgreSQL refuses in text and json(b) values (22P05, 22P02), as the serializer
// escapes it: NUL, and surrogates (the test is cheap; well-formed pairs are sorted out by the repair).
const UNSTORABLE_ESCAPE = /\\u0000|\\ud[89a-f]/i
// eslint-disable-next-line no-control-regex -- NUL is exactly what is looked for
const UNSTORABLE_CHARACTER = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g

/** The string with NUL and lone surrogates replaced by U+FFFD, which PostgreSQL stores. */
export function storableText (value: string): string {
  return value.replace(UNSTORABLE_CHARACTER, '\ufffd')
}

function storableValue (value: unknown): unknown {
  if (typeof value === 'string') return storableText(value)
  if (value === null || typeof value !== 'object') return value
  if (Array.isArray(value)) return value.map(storableValue)
  const out: Record<string, unknown> = {}
  for (const [key, v] of Object.entries(value)) out[storableText(key)] = storableValue(v)
  return out
}

/**
 * The batch parameter, which every row passes through: strings of any column, user
 * agents, headers and metadata keys and values alike, with what PostgreSQL refuses
 * replaced (SR-38: a NUL or a lone surrogate in a reason must not cost the row).
 */
export function serializeStorableRows (rows: readonly NewActivityLog[]): string {
  let json: string
  try {
    json = serializeRows(rows)
    return UNSTORABLE_ESCAPE.test(json) ? JSON.stringify(storableValue(JSON.parse(json))) : json
  } catch (error) {
    throw new UnserializableRowsError(error)
  }
}

type ActivityInsert = ReturnType<typeof prepareActivityInsert>
const preparedInserts = new WeakMap<Database, ActivityInsert>()

function prepareActivityInsert (db: Database) {
  return db.insert(activityLog).select(sql`select ${activityColumnList}
    from json_to_recordset(${sql.placeholder('rows')}::json) as r(${activityRecordType})`)
    .onConflictDoNothing().prepare('activity_log_insert')
}

/**
 * Writes a batch of rows with one statement whose text never changes: the rows
 * travel as one JSON parameter, unpacked by json_to_recordset into the table's
 * columns (typed from the drizzle schema). A multi-row VALUES list would have 20
 * parameters per row (4,000 for a batch of 200), its SQL built by drizzle and
 * parsed and planned by PostgreSQL for every batch; this one is built and prepared
 * once per database handle. `json`, not `jsonb`: the text is read once into the rows
 * instead of first being converted to jsonb's binary form (about 2 µs less of
 * PostgreSQL's CPU per row, of 19, on a 1,000,000-row table). Rows carry their
 * log_id and created_at (set when queued; no column default applies here). A batch
 * written again after an error is skipped row by row (log_id conflict).
 */
export async function insertActivityRows (db: Database, rows: readonly NewActivityLog[]): Promise<void> {
  if (rows.length === 0) return
  let insert = preparedInserts.get(db)
  if (!insert) preparedInserts.set(db, insert = prepareActivityInsert(db))
  await insert.execute({ rows: serializeStorableRows(rows) })
}

// ---------------------------------------------------------------------------
// The plugin
// ---------------------------------------------------------------------------

export default fp(async (fastify) => {
  const { config } = fastify
  const prefix = `/${config.MODE}/`
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
      // Completed here rather than in the request: parsing a user agent costs a little.
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
      metadata: event.metadata ? scrubMetadata(event.metadata) as Record<string, unknown> : null,
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

  // The error code of a failed request, for the metadata of its automatic row.
  const errorCodes = new WeakMap<object, string>()
  fastify.addHook('onError', async (request, _reply, error) => {
    errorCodes.set(request, toAppError(error).code)
  })

  fastify.addHook('onResponse', (request, reply, done) => {
    const own = existingCaller(request)?.auditRows as PendingRow[] | null | undefined
    if (own) {
      // Audit rows were queued mid-request: they get the outcome while they still wait.
      for (const p of own) {
        if (p.taken) continue
        p.row.status_code ??= reply.statusCode
        p.row.duration_ms = Math.round(reply.elapsedTime)
      }
    } else if (config.ACTIVITY_LOG_REQUESTS && MUTATING.has(request.method) && !request.is404) {
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
