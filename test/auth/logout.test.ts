import t from 'tap'
import { and, eq } from 'drizzle-orm'
import { build } from '../helpers/build.ts'
import { bearer, createUser, login } from '../helpers/users.ts'
import { activityLog } from '../../db/schema/index.ts'

const profile = '/api/v1/settings/profile'

t.test('SR-20: logout current / others / all, immediately', async (t) => {
  const app = await build(t)
  const u = await createUser(app)
  const status = async (token: string) => (await app.inject({ url: profile, headers: bearer(token) })).statusCode

  const [a, b, c] = [await login(app, u.email!), await login(app, u.email!), await login(app, u.email!)]
  // Warm the cache so revocation must overwrite it, not merely miss it.
  for (const s of [a, b, c]) t.equal(await status(s.session_token), 200)

  const current = await app.inject({ method: 'POST', url: '/api/v1/auth/logout', headers: bearer(a.access_token) })
  t.equal(current.statusCode, 200)
  t.same(current.json().data, { scope: 'current', revoked_sessions: 1 })
  t.equal(await status(a.access_token), 401, 'current: its access token fails')
  t.equal(await status(a.session_token), 401, 'current: its session token fails')
  t.equal((await app.inject({ method: 'POST', url: '/api/v1/auth/refresh-token', payload: { refresh_token: a.refresh_token } })).statusCode, 401, 'current: its refresh token fails')
  t.equal(await status(b.access_token), 200, 'other sessions continue')

  const d = await login(app, u.email!)
  const others = await app.inject({ method: 'POST', url: '/api/v1/auth/logout', headers: bearer(b.session_token), payload: { scope: 'others' } })
  t.same(others.json().data, { scope: 'others', revoked_sessions: 2 })
  t.equal(await status(b.session_token), 200, 'others: the caller continues')
  t.equal(await status(c.session_token), 401)
  t.equal(await status(d.access_token), 401)

  const e = await login(app, u.email!)
  const all = await app.inject({ method: 'POST', url: '/api/v1/auth/logout?scope=all', headers: bearer(e.access_token) })
  t.same(all.json().data, { scope: 'all', revoked_sessions: 2 })
  t.equal(await status(b.session_token), 401)
  t.equal(await status(e.access_token), 401)

  await app.activity.flush()
  const audited = await app.db.select().from(activityLog).where(and(eq(activityLog.action, 'logout'), eq(activityLog.target_user_id, u.user_id)))
  t.equal(audited.length, 3, 'SR-38: each logout is audited')
})

t.test('sessions list and revoking one; no access to another user\'s session (SR-25)', async (t) => {
  const app = await build(t)
  const u = await createUser(app)
  const a = await login(app, u.email!, undefined, { 'user-agent': 'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36' })
  const b = await login(app, u.email!)
  const list = await app.inject({ url: '/api/v1/auth/sessions', headers: bearer(a.access_token) })
  t.equal(list.statusCode, 200)
  const sessions = list.json().data
  t.equal(sessions.length, 2)
  t.equal(sessions.find((s: any) => s.current).session_id, a.session_id)
  t.match(sessions.find((s: any) => s.current).device_name, /Chrome.*macOS/)

  const intruder = await createUser(app)
  const intruderTokens = await login(app, intruder.email!)
  const foreign = await app.inject({ method: 'DELETE', url: `/api/v1/auth/sessions/${b.session_id}`, headers: bearer(intruderTokens.access_token) })
  t.equal(foreign.statusCode, 404, 'another user\'s session is not found')
  t.equal((await app.inject({ url: profile, headers: bearer(b.access_token) })).statusCode, 200, 'and stays alive')

  const own = await app.inject({ method: 'DELETE', url: `/api/v1/auth/sessions/${b.session_id}`, headers: bearer(a.access_token) })
  t.equal(own.statusCode, 200)
  t.equal((await app.inject({ url: profile, headers: bearer(b.access_token) })).statusCode, 401)
  t.equal((await app.inject({ method: 'DELETE', url: '/api/v1/auth/sessions/not-a-uuid', headers: bearer(a.access_token) })).statusCode, 400, 'a malformed id is a 400')
})
