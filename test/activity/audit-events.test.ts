import t from 'tap'
import { eq } from 'drizzle-orm'
import type { FastifyInstance, InjectOptions } from 'fastify'
import { build } from '../helpers/build.ts'
import { createUser, defaultPassword } from '../helpers/users.ts'
import { activityLog, type ActivityLog } from '../../db/schema/index.ts'

/**
 * SR-38: every auth event that exists writes exactly one row, with actor,
 * target, IP, user agent, request id, session id and a UTC time, and no
 * password, OTP or token anywhere (and no automatic request row besides).
 */
const api = '/api/v1'
const iphone = 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1'
const clientIp = '203.0.113.7'
// No timer flush in the middle of a test: rows are written when the test calls flush().
const quiet = { ACTIVITY_FLUSH_INTERVAL_MS: '60000', LOAD_SHED_EVENT_LOOP_DELAY_MS: '0' }

function client (app: FastifyInstance) {
  let seq = 0
  return async (options: InjectOptions & { url: string }) => {
    const requestId = `sr38-request-${String(++seq).padStart(3, '0')}`
    const res = await app.inject({ ...options, remoteAddress: clientIp, headers: { 'user-agent': iphone, 'x-request-id': requestId, ...options.headers } })
    return Object.assign(res, { requestId })
  }
}

async function rowsOf (app: FastifyInstance, requestId: string) {
  await app.activity.flush()
  return app.db.select().from(activityLog).where(eq(activityLog.request_id, requestId))
}

t.test('SR-38: each auth event writes exactly one row with actor, target, IP, user agent, request id, session id and UTC time, and no secret', async (t) => {
  const clock = { at: Date.now() }
  const app = await build(t, { ...quiet, LOGIN_LOCKOUT_THRESHOLD: '2' }, { now: () => clock.at })
  const call = client(app)
  const u = await createUser(app, { user_name: 'audited_user' })
  const victim = await createUser(app)
  const secrets: string[] = [defaultPassword, 'a wrong password!']
  const checked: ActivityLog[] = []

  const expectOne = async (res: { requestId: string, statusCode: number }, action: string, fields: Partial<ActivityLog>) => {
    const rows = await rowsOf(app, res.requestId)
    t.same(rows.map((r) => r.action), [action], `${action}: exactly one row for its request`)
    const row = rows[0]
    t.match(row, {
      module: 'auth',
      ip_address: clientIp,
      user_agent: iphone,
      device: 'mobile',
      browser: 'Mobile Safari 17',
      os: 'iOS 17.5',
      request_id: res.requestId,
      method: 'POST',
      status_code: res.statusCode,
      ...fields
    }, `${action}: server-side fields`)
    t.ok(row.created_at instanceof Date && row.created_at.getTime() === clock.at, `${action}: the time of the event`)
    t.type(row.duration_ms, 'number')
    checked.push(row)
    return row
  }

  const failed = await call({ method: 'POST', url: `${api}/auth/login-with-password`, payload: { identifier: u.email, password: 'a wrong password!' } })
  t.equal(failed.statusCode, 401)
  await expectOne(failed, 'login_failed', { level: 'warning', user_id: null, target_user_id: u.user_id, session_id: null, endpoint: `${api}/auth/login-with-password` })

  clock.at += 1000
  const ok = await call({ method: 'POST', url: `${api}/auth/login-with-password`, payload: { identifier: 'audited_user', password: defaultPassword } })
  t.equal(ok.statusCode, 200)
  const tokens = ok.json().data
  secrets.push(tokens.access_token, tokens.session_token, tokens.refresh_token, tokens.refresh_token.split('.').at(-1))
  await expectOne(ok, 'login_success', { level: 'info', user_id: u.user_id, target_user_id: u.user_id, session_id: tokens.session_id })

  clock.at += 1000
  const refreshed = await call({ method: 'POST', url: `${api}/auth/refresh-token`, payload: { refresh_token: tokens.refresh_token } })
  t.equal(refreshed.statusCode, 200)
  const rotated = refreshed.json().data
  secrets.push(rotated.access_token, rotated.session_token, rotated.refresh_token)
  await expectOne(refreshed, 'token_refresh', { user_id: u.user_id, target_user_id: u.user_id, session_id: tokens.session_id })

  clock.at += 60_000
  const reused = await call({ method: 'POST', url: `${api}/auth/refresh-token`, payload: { refresh_token: tokens.refresh_token } })
  t.equal(reused.json().error.code, 'AUTH_REFRESH_REUSED')
  await expectOne(reused, 'refresh_token_reuse', { level: 'critical', user_id: u.user_id, target_user_id: u.user_id, session_id: tokens.session_id, status_code: 401 })

  // OAuth2 password grant: the same login event.
  clock.at += 1000
  const oauth = await call({ method: 'POST', url: `${api}/token`, payload: `grant_type=password&username=${encodeURIComponent(u.email!)}&password=${encodeURIComponent(defaultPassword)}&scope=`, headers: { 'content-type': 'application/x-www-form-urlencoded' } })
  t.equal(oauth.statusCode, 200)
  const second = oauth.json()
  secrets.push(second.access_token, second.session_token, second.refresh_token)
  await expectOne(oauth, 'login_success', { user_id: u.user_id, session_id: second.session_id, endpoint: `${api}/token` })

  clock.at += 1000
  const third = (await call({ method: 'POST', url: `${api}/auth/login-with-password`, payload: { identifier: u.email, password: defaultPassword } })).json().data
  secrets.push(third.access_token, third.session_token, third.refresh_token)
  const revoked = await call({ method: 'DELETE', url: `${api}/auth/sessions/${third.session_id}`, headers: { authorization: `Bearer ${second.access_token}` } })
  t.equal(revoked.statusCode, 200)
  const revokedRow = await expectOne(revoked, 'session_revoked', { user_id: u.user_id, target_user_id: u.user_id, session_id: second.session_id, method: 'DELETE', endpoint: `${api}/auth/sessions/:session_id` })
  t.same(revokedRow.metadata, { revoked_session_id: third.session_id })

  const logout = await call({ method: 'POST', url: `${api}/auth/logout`, headers: { authorization: `Bearer ${second.session_token}` } })
  t.equal(logout.statusCode, 200)
  await expectOne(logout, 'logout', { user_id: u.user_id, target_user_id: u.user_id, session_id: second.session_id })

  // Lockout (threshold 2 here): the failure that locks writes its failure and the lockout, one row each.
  const first = await call({ method: 'POST', url: `${api}/auth/login-with-password`, payload: { identifier: victim.email, password: 'a wrong password!' } })
  await expectOne(first, 'login_failed', { target_user_id: victim.user_id })
  const locking = await call({ method: 'POST', url: `${api}/auth/login-with-password`, payload: { identifier: victim.email, password: 'a wrong password!' } })
  const lockRows = await rowsOf(app, locking.requestId)
  t.same(lockRows.map((r) => r.action).sort(), ['account_locked', 'login_failed'], 'one failure row and one lockout row')
  const locked = lockRows.find((r) => r.action === 'account_locked')!
  t.match(locked, { level: 'warning', user_id: null, target_user_id: victim.user_id, ip_address: clientIp, user_agent: iphone, request_id: locking.requestId })
  checked.push(...lockRows)

  const everything = JSON.stringify(await app.db.select().from(activityLog))
  for (const secret of secrets) t.notOk(everything.includes(secret), `no secret in any row (${secret.slice(0, 12)}…)`)
  t.notOk(everything.includes(victim.password!), 'no password hash either')

  const viaApi = await app.inject({ url: `${api}/activity/me`, headers: { authorization: `Bearer ${rotated.access_token}` } })
  t.equal(viaApi.statusCode, 401, 'the reused family is revoked')
  t.ok(checked.every((r) => r.created_at.toISOString().endsWith('Z')), 'UTC timestamps')
})
