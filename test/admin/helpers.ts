import type { FastifyInstance, InjectOptions } from 'fastify'
import { eq, inArray } from 'drizzle-orm'
import { activityLog, group, groupPermission, permission, user } from '../../db/schema/index.ts'
import { createUser, type NewTestUser } from '../helpers/users.ts'

/** Shared by test/admin, test/settings and test/routes: actors with tokens, and short request helpers. */
export const api = '/api/v1'

/** Cheap hashing and roomy rate limits: these files create many accounts and send many requests from one IP. */
export const fastEnv = {
  ARGON2_MEMORY_KIB: '1024',
  ARGON2_TIME_COST: '1',
  RATE_LIMIT_MAX: '100000',
  AUTH_RATE_LIMIT_PER_IP: '100000',
  AUTH_RATE_LIMIT_PER_IDENTIFIER: '100000'
}

export interface Actor {
  id: string
  email: string
  password: string | null
  access: string
  session: string
  sessionId: string
  refresh: string
  headers: { authorization: string }
}

/** A user in the database with a fresh session (created like a login, without the login's rate limits). */
export async function actor (app: FastifyInstance, spec: NewTestUser = {}): Promise<Actor> {
  const row = await createUser(app, spec)
  const bundle = await app.sessions.create(row, { ip: '127.0.0.1', method: 'password' })
  return {
    id: row.user_id,
    email: row.email!,
    password: row.plainPassword,
    access: bundle.access_token,
    session: bundle.session_token,
    sessionId: bundle.session_id,
    refresh: bundle.refresh_token,
    headers: { authorization: `Bearer ${bundle.access_token}` }
  }
}

/** A new session for an existing user (a second device). */
export async function newSession (app: FastifyInstance, userId: string) {
  const [row] = await app.db.select().from(user).where(eq(user.user_id, userId))
  return app.sessions.create(row, { ip: '127.0.0.1', method: 'password' })
}

export function call (app: FastifyInstance, method: InjectOptions['method'], url: string, who?: Actor | string, payload?: unknown, extra: Partial<InjectOptions> = {}) {
  const token = typeof who === 'string' ? who : who?.access
  return app.inject({
    method,
    url: `${api}${url}`,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(extra.headers ?? {}) },
    ...(payload === undefined ? {} : { payload: payload as InjectOptions['payload'] }),
    ...(extra.query ? { query: extra.query } : {})
  })
}

/** A non-system group granting exactly these permissions, straight into the database. */
export async function groupWith (app: FastifyInstance, codename: string, permissions: readonly string[], active = true) {
  const [row] = await app.db.insert(group).values({ codename, name: codename, is_active: active }).returning()
  if (permissions.length > 0) {
    const perms = await app.db.select().from(permission).where(inArray(permission.codename, [...permissions]))
    if (perms.length !== new Set(permissions).size) throw new Error(`unknown permission among ${permissions.join(', ')}`)
    await app.db.insert(groupPermission).values(perms.map((p) => ({ group_id: row.group_id, permission_id: p.permission_id })))
  }
  return row
}

export async function groupId (app: FastifyInstance, codename: string) {
  const [row] = await app.db.select().from(group).where(eq(group.codename, codename))
  if (!row) throw new Error(`no group ${codename}`)
  return row.group_id
}

export async function userRow (app: FastifyInstance, userId: string) {
  const [row] = await app.db.select().from(user).where(eq(user.user_id, userId))
  return row
}

/** Audit rows of an action; queued rows are written first (the activity log is buffered). */
export async function audits (app: FastifyInstance, action: string) {
  await app.activity.flush()
  return app.db.select().from(activityLog).where(eq(activityLog.action, action))
}
