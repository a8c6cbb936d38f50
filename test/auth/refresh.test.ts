import t from 'tap'
import { and, eq } from 'drizzle-orm'
import { build } from '../helpers/build.ts'
import { bearer, createUser, login } from '../helpers/users.ts'
import { activityLog } from '../../db/schema/index.ts'

const refreshUrl = '/api/v1/auth/refresh-token'
const day = 24 * 60 * 60 * 1000

function clock () {
  let offset = 0
  return { now: () => Date.now() + offset, advance: (ms: number) => { offset += ms } }
}

t.test('SR-18: rotation, the grace window, and reuse detection', async (t) => {
  const time = clock()
  const app = await build(t, {}, { now: time.now })
  const u = await createUser(app)
  const first = await login(app, u.email!)

  const rotated = await app.inject({ method: 'POST', url: refreshUrl, payload: { refresh_token: first.refresh_token } })
  t.equal(rotated.statusCode, 200)
  const second = rotated.json().data
  t.not(second.refresh_token, first.refresh_token, 'a new refresh token')
  t.not(second.access_token, first.access_token)
  t.equal(second.session_id, first.session_id)
  t.equal((await app.inject({ url: '/api/v1/settings/profile', headers: bearer(second.access_token) })).statusCode, 200)

  const replayInGrace = await app.inject({ method: 'POST', url: refreshUrl, payload: { refresh_token: first.refresh_token } })
  t.equal(replayInGrace.statusCode, 200, 'a replay inside the grace window succeeds')
  t.equal(replayInGrace.json().data.refresh_token, second.refresh_token, '...with the same new refresh token')

  time.advance(11_000)
  const reuse = await app.inject({ method: 'POST', url: refreshUrl, payload: { refresh_token: first.refresh_token } })
  t.equal(reuse.statusCode, 401)
  t.equal(reuse.json().error.code, 'AUTH_REFRESH_REUSED')
  t.equal((await app.inject({ method: 'POST', url: refreshUrl, payload: { refresh_token: second.refresh_token } })).statusCode, 401, 'the whole session (family) is revoked')
  t.equal((await app.inject({ url: '/api/v1/settings/profile', headers: bearer(second.access_token) })).statusCode, 401, 'its access tokens fail at once')
  await app.activity.flush()
  const audit = await app.db.select().from(activityLog).where(and(eq(activityLog.action, 'refresh_token_reuse'), eq(activityLog.session_id, first.session_id)))
  t.equal(audit.length, 1, 'the reuse is audited')
  t.equal(audit[0].level, 'critical')
})

t.test('SR-18: two concurrent refreshes both succeed', async (t) => {
  const app = await build(t)
  const u = await createUser(app)
  const tokens = await login(app, u.email!)
  const [a, b] = await Promise.all([0, 1].map(() => app.inject({ method: 'POST', url: refreshUrl, payload: { refresh_token: tokens.refresh_token } })))
  t.equal(a.statusCode, 200)
  t.equal(b.statusCode, 200)
  t.equal(a.json().data.refresh_token, b.json().data.refresh_token)
  const next = await app.inject({ method: 'POST', url: refreshUrl, payload: { refresh_token: a.json().data.refresh_token } })
  t.equal(next.statusCode, 200, 'the shared new token keeps rotating')
})

t.test('SR-18: tampered or unknown refresh tokens are refused', async (t) => {
  const app = await build(t)
  const u = await createUser(app)
  const tokens = await login(app, u.email!)
  const [sid, gen, mac] = tokens.refresh_token.split('.')
  for (const bad of [`${sid}.${Number(gen) + 1}.${mac}`, `${sid}.${gen}.${mac.slice(0, -2)}AA`, `00000000-0000-4000-8000-000000000000.0.${mac}`, 'short-garbage-token']) {
    const res = await app.inject({ method: 'POST', url: refreshUrl, payload: { refresh_token: bad } })
    t.equal(res.statusCode, 401, bad)
  }
  t.equal((await app.inject({ method: 'POST', url: refreshUrl, payload: { refresh_token: tokens.refresh_token } })).statusCode, 200, 'tampering does not revoke the real session')
})

t.test('SR-19: idle lifetime (7 d) and absolute lifetime (30 d) hold', async (t) => {
  const time = clock()
  const app = await build(t, {}, { now: time.now })
  const u = await createUser(app)

  const idle = await login(app, u.email!)
  time.advance(7 * day + 60_000)
  t.equal((await app.inject({ method: 'POST', url: refreshUrl, payload: { refresh_token: idle.refresh_token } })).statusCode, 401, 'unused for over 7 days: expired')

  const active = await login(app, u.email!)
  let token = active.refresh_token
  for (let i = 0; i < 4; i++) {
    time.advance(6 * day)
    const res = await app.inject({ method: 'POST', url: refreshUrl, payload: { refresh_token: token } })
    t.equal(res.statusCode, 200, `refreshed on day ${(i + 1) * 6}`)
    token = res.json().data.refresh_token
  }
  time.advance(6 * day + 60_000)
  t.equal((await app.inject({ method: 'POST', url: refreshUrl, payload: { refresh_token: token } })).statusCode, 401, 'past 30 days: expired however active')
})
