import { spawnSync } from 'node:child_process'
import { and, eq, inArray } from 'drizzle-orm'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { activityLog } from '../../db/schema/index.ts'
import { buildContext, stack } from './build.ts'
import { createUser, defaultPassword } from './users.ts'
import { waitFor } from './redis-server.ts'

/**
 * The scenario both Redis high-availability tests run (Sentinel and Cluster):
 * login, revocation, lockout and the global rate limit work; the Redis master that
 * holds the revoked session's entry is killed (SIGKILL) and a replica promoted; the
 * revoked tokens stay refused (also when the promoted replica holds the entry from
 * before the revocation, as when the revocation was not replicated in time), the
 * lockout holds, everything works again, and every audit row is in PostgreSQL.
 */

/** What the scenario uses of a tap test (its assertions' overloads do not fit a narrower type). */
interface T {
  teardown: (fn: () => unknown) => void
  equal: (...args: any[]) => unknown
  ok: (...args: any[]) => unknown
  comment: (...args: any[]) => unknown
}

export function redisHaSkipReason (): string | false {
  if (stack === 'embedded') return 'Redis high availability: needs real Redis processes and PostgreSQL; the embedded stack has no Redis'
  if (spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status !== 0) return 'redis-server is not installed'
  if (spawnSync('redis-cli', ['--version'], { stdio: 'ignore' }).status !== 0) return 'redis-cli is not installed'
  return false
}

const api = '/api/v1'
const profile = `${api}/settings/profile`
const bearer = (token: string) => ({ authorization: `Bearer ${token}` })
/** The cache key of a session, as plugins/app/auth/sessions.ts builds it. */
export const sessionCacheKey = (userId: string, sessionId: string) => `{${userId}}:s:${sessionId}`

export interface Failover {
  /** The key whose master is killed (after the app's key prefix). */
  kill: (prefixedKey: string) => Promise<void>
  /** Resolves once a replica serves the killed master's data. */
  promoted: () => Promise<void>
}

export async function failoverScenario (t: T, env: Record<string, string>, failover: (app: FastifyInstance) => Failover) {
  const ctx = await buildContext(t, { REDIS_URL: '', REDIS_COMMAND_TIMEOUT_MS: '2000', RATE_LIMIT_MAX: '5', LOGIN_LOCKOUT_THRESHOLD: '3', ...env })
  const { app } = ctx
  t.equal(app.store.kind, 'redis', 'the app uses Redis')
  // Each call from its own client address, so only the rate-limit checks reach the global per-IP limit.
  let client = 0
  const call = async (opts: { method?: 'GET' | 'POST', url: string, headers?: Record<string, string>, payload?: unknown, ip?: string }) =>
    app.inject({ method: opts.method ?? 'GET', url: opts.url, headers: opts.headers, payload: opts.payload as never, remoteAddress: opts.ip ?? `10.1.${(++client >> 8) & 255}.${client & 255}` })
  const logins = { success: 0, logout: 0 }
  const login = async (email: string, password = defaultPassword): Promise<LightMyRequestResponse> => {
    const res = await call({ method: 'POST', url: `${api}/auth/login-with-password`, payload: { identifier: email, password } })
    if (res.statusCode === 200) logins.success++
    return res
  }
  const logout = async (accessToken: string) => {
    const res = await call({ method: 'POST', url: `${api}/auth/logout`, headers: bearer(accessToken) })
    if (res.statusCode === 200) logins.logout++
    return res
  }
  const status = async (token: string) => (await call({ url: profile, headers: bearer(token) })).statusCode
  const rateLimited = async (ip: string, token: string) => {
    const codes: number[] = []
    for (let i = 0; i < 6; i++) codes.push((await call({ url: profile, headers: bearer(token), ip })).statusCode)
    return codes
  }

  const owner = await createUser(app)
  const victim = await createUser(app)
  const kept = (await login(owner.email!)).json().data
  const revoked = (await login(owner.email!)).json().data
  t.ok(kept?.access_token && revoked?.access_token, 'SR-20: two sessions logged in')
  for (const s of [kept, revoked]) t.equal(await status(s.session_token), 200, 'SR-20: a valid session is accepted (and cached)')
  const key = sessionCacheKey(owner.user_id, revoked.session_id)
  const entryBeforeRevocation = await app.store.get(key)
  t.ok(entryBeforeRevocation?.startsWith('a:'), 'the active session is cached under its hash-tagged key', { entryBeforeRevocation })
  t.equal((await logout(revoked.access_token)).statusCode, 200, 'SR-20: logout')
  t.equal(await status(revoked.access_token), 401, 'SR-20: the logged-out access token is refused')
  t.equal(await status(revoked.session_token), 401, 'SR-20: the logged-out session token is refused')

  let locked = false
  for (let i = 0; i < 6 && !locked; i++) {
    const res = await login(victim.email!, 'not the password at all')
    locked = res.statusCode === 429 && res.json().error.code === 'AUTH_ACCOUNT_LOCKED'
  }
  t.ok(locked, 'SR-9: wrong passwords lock the account')
  t.equal((await login(victim.email!)).statusCode, 429, 'SR-9: while locked, even the right password is refused')
  t.equal((await rateLimited('10.200.0.1', kept.access_token)).join(','), '200,200,200,200,200,429', 'SR-10: the global per-IP limit counts in Redis')

  const before = app.authCache.known
  t.ok(app.authCache.trusted >= 0, 'the auth-state cache is trusted before the failover')
  const { kill, promoted } = failover(app)
  await kill(`${ctx.prefix}${key}`)
  // While no master serves the entry: checks fall back to PostgreSQL (SR-41).
  t.equal(await status(revoked.access_token), 401, 'SR-41: master down: the revoked token stays refused')
  t.equal(await status(kept.access_token), 200, 'SR-41: master down: a valid token is checked against PostgreSQL')
  const startedAt = Date.now()
  await promoted()
  // The instance learns that another server process serves the data and stops trusting what it holds.
  await waitFor('the auth-state cache to trust the new master', 30_000, async () => {
    await status(kept.access_token)
    return app.authCache.trusted > before
  })
  t.comment(`replica promoted and the cache generation bumped ${Date.now() - startedAt} ms after the kill`)
  t.ok(app.authCache.trusted > before, 'SR-20: the cache generation was bumped for the promoted replica', { before, after: app.authCache.trusted })

  t.equal(await status(revoked.access_token), 401, 'SR-20: after the failover the revoked access token stays refused')
  t.equal(await status(revoked.session_token), 401, 'SR-20: after the failover the revoked session token stays refused')
  // As if the revocation had not reached the replica before the master died.
  await app.store.set(key, entryBeforeRevocation!, 60_000)
  t.equal(await status(revoked.access_token), 401, 'SR-20: the promoted replica\'s older entry (from before the revocation) is not trusted')
  t.equal(await status(kept.access_token), 200, 'a valid session keeps working')
  t.equal(await status(kept.session_token), 200)
  const lockedAfter = await login(victim.email!)
  t.equal(lockedAfter.statusCode, 429, 'SR-9: the lockout holds across the failover')
  t.equal(lockedAfter.json().error.code, 'AUTH_ACCOUNT_LOCKED')

  const fresh = await login(owner.email!)
  t.equal(fresh.statusCode, 200, 'login works after the failover')
  t.equal((await logout(fresh.json().data.access_token)).statusCode, 200, 'logout works after the failover')
  t.equal(await status(fresh.json().data.access_token), 401, 'SR-20: and its token is refused')
  t.equal((await rateLimited('10.200.0.2', kept.access_token)).join(','), '200,200,200,200,200,429', 'SR-10: the global per-IP limit works after the failover')
  t.equal((await app.inject('/health/ready')).statusCode, 200, 'ready again')

  // Audit rows go to PostgreSQL, never through Redis: every one is there.
  await app.activity.flush()
  const rows = await app.db.select({ action: activityLog.action }).from(activityLog)
    .where(and(inArray(activityLog.action, ['login_success', 'logout']), eq(activityLog.target_user_id, owner.user_id)))
  t.equal(rows.filter((r) => r.action === 'login_success').length, logins.success, `SR-38: one login_success row per login (${logins.success})`)
  t.equal(rows.filter((r) => r.action === 'logout').length, logins.logout, `SR-38: one logout row per logout (${logins.logout})`)
  const lockRows = await app.db.select({ action: activityLog.action }).from(activityLog)
    .where(and(eq(activityLog.action, 'account_locked'), eq(activityLog.target_user_id, victim.user_id)))
  t.ok(lockRows.length >= 1, 'SR-38: the lockout was audited')
}
