import type { FastifyBaseLogger } from 'fastify'
import type { NewActivityLog } from '../../../db/schema/index.ts'
import { pgError } from '../../../db/errors.ts'
import { AppError } from '../../../schemas/errors.ts'
import { isDependencyDown } from '../http/errors.ts'
import { UnserializableRowsError } from './writer.ts'

export interface PendingRow {
  row: NewActivityLog & { log_id: string }
  security: boolean
  /** Taken out of the buffer to be written: no longer updated by its request. */
  taken: boolean
  /** Told once the row is written (no argument) or dropped (the reason), for callers that answer only then. */
  settle?: (dropped?: Error) => void
}

// The buffer: bounded, batched, retried; pure enough to be tested on its own.

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

const pgCode = (error: unknown) => pgError(error)?.code

/**
 * Errors caused by a row's content (data 22, integrity 23, program limits 54 such as
 * a too deeply nested value; or a row that could not even be serialized), as
 * opposed to the database or the connection.
 */
const isRowError = (error: unknown) => error instanceof UnserializableRowsError || /^(22|23|54)/.test(pgCode(error) ?? '')
