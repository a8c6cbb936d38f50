import { existsSync, readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import type { FastifyInstance, InjectOptions } from 'fastify'
import { and, eq } from 'drizzle-orm'
import { activityLog } from '../../db/schema/index.ts'
import type { AppDeps } from '../../app.ts'
import { build as buildApp } from './build.ts'
import { codeIn } from './smtp.ts'

/** For the test/otp files: the development outbox, a fake clock, short request helpers. */
export const api = '/api/v1'

/**
 * build() without load shedding: these files assert exact statuses, and on a busy
 * machine (or while PGlite loads its template on the event loop) under-pressure
 * would answer some requests 503 and make them flaky.
 */
export function build (t: Parameters<typeof buildApp>[0], env: Record<string, string> = {}, deps: AppDeps = {}) {
  return buildApp(t, { LOAD_SHED_EVENT_LOOP_DELAY_MS: '0', ...env }, deps)
}

export interface OutboxMessage {
  id: string
  channel: 'email' | 'sms' | 'whatsapp'
  to: string
  subject: string
  text: string
  html?: string
  template: string
  purpose?: string
  created_at: string
}

export function readOutbox (app: FastifyInstance): OutboxMessage[] {
  const dir = path.join(app.config.DATA_DIR, 'outbox')
  if (!existsSync(dir)) return []
  return readdirSync(dir).filter((f) => f.endsWith('.json')).sort()
    .map((f) => JSON.parse(readFileSync(path.join(dir, f), 'utf8')) as OutboxMessage)
}

/** The code of the latest one-time password the outbox holds for an address (and purpose). */
export function lastCode (app: FastifyInstance, to: string, purpose?: string): string {
  const message = readOutbox(app).filter((m) => m.to === to && m.template === 'otp' && (!purpose || m.purpose === purpose)).pop()
  const code = message && codeIn(message.text)
  if (!code) throw new Error(`no code in the outbox for ${to} (${purpose ?? 'any purpose'})`)
  return code
}

export function fakeClock (start = Date.now()) {
  const clock = {
    at: start,
    now: () => clock.at,
    advance: (ms: number) => { clock.at += ms }
  }
  return clock
}

export function post (app: FastifyInstance, url: string, payload?: unknown, options: Omit<InjectOptions, 'url' | 'method' | 'payload'> = {}) {
  return app.inject({ method: 'POST', url: `${api}${url}`, ...(payload === undefined ? {} : { payload: payload as InjectOptions['payload'] }), ...options })
}

export async function sendCode (app: FastifyInstance, payload: Record<string, unknown>, options: Omit<InjectOptions, 'url' | 'method' | 'payload'> = {}) {
  return post(app, '/auth/send-one-time-password', payload, options)
}

/** Audit rows of an action (after writing the ones still buffered). */
export async function auditRows (app: FastifyInstance, action: string, targetUserId?: string) {
  await app.activity.flush()
  return app.db.select().from(activityLog).where(targetUserId ? and(eq(activityLog.action, action), eq(activityLog.target_user_id, targetUserId)) : eq(activityLog.action, action))
}

export const strongPassword = 'violet tractor humming 42'

/** Every key and value of the app's store (in-process map, or this app's Redis prefix). */
export async function storeDump (app: FastifyInstance): Promise<Array<[string, string]>> {
  const store = app.store as unknown as { kind: string, data?: Map<string, { value: string }> }
  if (store.kind === 'memory') return [...store.data!.entries()].map(([key, entry]) => [key, entry.value])
  const redis = (app as unknown as { redis: { keys: (pattern: string) => Promise<string[]> } }).redis
  const prefix = app.config.REDIS_KEY_PREFIX
  // KEYS takes no prefix from ioredis, GET does: strip it from what KEYS answers.
  const keys = (await redis.keys(`${prefix}*`)).map((k) => k.slice(prefix.length))
  return Promise.all(keys.map(async (key) => [key, (await app.store.get(key)) ?? ''] as [string, string]))
}
