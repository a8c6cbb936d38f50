import t from 'tap'
import { Readable } from 'node:stream'
import { eq } from 'drizzle-orm'
import { build } from '../helpers/build.ts'
import { createUser } from '../helpers/users.ts'
import { png } from '../upload/samples.ts'
import { activityLog, media, session, userGroup } from '../../db/schema/index.ts'
import { actor, api, audits, call, fastEnv, groupWith, newSession, userRow } from '../admin/helpers.ts'

const refresh = (app: Awaited<ReturnType<typeof build>>, token: string) =>
  app.inject({ method: 'POST', url: `${api}/auth/refresh-token`, payload: { refresh_token: token } })
const loginStatus = async (app: Awaited<ReturnType<typeof build>>, identifier: string, password: string) =>
  (await app.inject({ method: 'POST', url: `${api}/auth/login-with-password`, payload: { identifier, password } }))

t.test('SR-21: deactivate-account makes every token of the user fail on the next request', async (t) => {
  const app = await build(t, fastEnv)
  const me = await actor(app)
  const laptop = await newSession(app, me.id)
  const bystander = await actor(app)
  t.equal((await call(app, 'GET', '/settings/profile', laptop.session_token)).statusCode, 200)

  const res = await call(app, 'POST', '/settings/deactivate-account', me, { reason: 'taking a break' })
  t.equal(res.statusCode, 200, res.body)
  t.match(res.json().data, { user_id: me.id, status: 'inactive', revoked_sessions: 2 })

  for (const token of [me.access, me.session, laptop.access_token, laptop.session_token]) {
    t.equal((await call(app, 'GET', '/settings/profile', token)).statusCode, 401, 'token fails')
  }
  t.equal((await refresh(app, me.refresh)).statusCode, 401, 'refresh fails')
  t.equal((await refresh(app, laptop.refresh_token)).statusCode, 401)
  const again = await loginStatus(app, me.email, me.password!)
  t.equal(again.statusCode, 403, 'login is refused')
  t.equal(again.json().error.code, 'AUTH_ACCOUNT_INACTIVE')
  t.match(await userRow(app, me.id), { is_active: false, status: 'inactive' })
  t.ok((await userRow(app, me.id)).deactivated_at)
  t.equal((await call(app, 'GET', '/settings/profile', bystander)).statusCode, 200, 'other users are unaffected')
  const [row] = (await audits(app, 'account_deactivate')).filter((a) => a.target_user_id === me.id)
  t.ok(row, 'audited')
  t.equal(row.user_id, me.id)
  t.match(row.metadata, { revoked_sessions: 2, reason: 'taking a break' })
  t.equal(row.request_id !== null && row.ip_address !== null, true)
})

t.test('SR-23: delete-account needs a login of the last minutes or the current password', async (t) => {
  const clock = { at: Date.now() - 30 * 60_000 }
  const app = await build(t, fastEnv, { now: () => clock.at })
  const stale = await actor(app)
  const freshUser = await actor(app)
  clock.at += 11 * 60_000
  const freshLogin = await newSession(app, freshUser.id)

  const denied = await call(app, 'POST', '/settings/delete-account', stale)
  t.equal(denied.statusCode, 403, 'a login older than REAUTH_WINDOW_MINUTES is not enough')
  t.equal(denied.json().error.code, 'AUTH_REAUTH_REQUIRED')
  const wrong = await call(app, 'POST', '/settings/delete-account', stale, { current_password: 'not my password at all' })
  t.equal(wrong.statusCode, 400)
  t.equal(wrong.json().error.code, 'AUTH_CURRENT_PASSWORD_INVALID')
  t.match(await userRow(app, stale.id), { status: 'active', email: stale.email }, 'nothing happened')
  t.equal((await call(app, 'GET', '/settings/profile', stale)).statusCode, 200)

  const withPassword = await call(app, 'POST', '/settings/delete-account', stale, { current_password: stale.password })
  t.equal(withPassword.statusCode, 200, withPassword.body)
  t.equal((await userRow(app, stale.id)).status, 'deleted')

  const staleSessionOfFresh = await call(app, 'POST', '/settings/delete-account', freshUser)
  t.equal(staleSessionOfFresh.statusCode, 403, 'the freshness is the session\'s, not the user\'s')
  const viaFreshLogin = await call(app, 'POST', '/settings/delete-account', freshLogin.access_token)
  t.equal(viaFreshLogin.statusCode, 200, 'a fresh login needs no password')
})

t.test('delete-account anonymises personal data in one go, keeps audit rows without their actor, revokes everything', async (t) => {
  const app = await build(t, fastEnv)
  await groupWith(app, 'club', [])
  const me = await actor(app, { phone_number: '+14155550142', user_name: 'leaving_user', groups: ['user', 'club'] })
  const laptop = await newSession(app, me.id)
  await call(app, 'PUT', '/settings/profile', me, { first_name: 'Lea', last_name: 'Ving', bio: 'bye', dob: '1990-05-05', country: 'DE', gender: 'x', language: 'de' })
  const file = await app.uploads.ingest({ source: Readable.from([await png()]), ownerId: me.id, originalName: 'me.png' })
  // An event with the user as actor, from before the deletion.
  await app.inject({ method: 'POST', url: `${api}/auth/login-with-password`, payload: { identifier: me.email, password: me.password } })
  await app.activity.flush()
  const before = await app.db.select().from(activityLog).where(eq(activityLog.user_id, me.id))
  t.ok(before.length >= 2, 'the user has audit rows as actor')

  const res = await call(app, 'POST', '/settings/delete-account', me, {})
  t.equal(res.statusCode, 200, res.body)
  t.match(res.json().data, { user_id: me.id, status: 'deleted', files_deleted: 1, files_pending: 0 })
  t.ok(res.json().data.revoked_sessions >= 2)

  const row = await userRow(app, me.id)
  t.match(row, {
    email: null,
    phone_number: null,
    user_name: null,
    password: null,
    first_name: null,
    last_name: null,
    bio: null,
    dob: null,
    country: null,
    gender: null,
    profile_picture_url: null,
    profile_picture_key: null,
    is_active: false,
    status: 'deleted',
    is_email_verified: false,
    is_phone_verified: false,
    last_login: null,
    language: 'en',
    profile_accessibility: 'private'
  })
  t.ok(row.deleted_at, 'deleted_at set')
  t.same(await app.db.select().from(session).where(eq(session.user_id, me.id)), [], 'sessions (IPs, user agents) deleted')
  t.same(await app.db.select().from(userGroup).where(eq(userGroup.user_id, me.id)), [], 'memberships deleted')
  t.same(await app.db.select().from(media).where(eq(media.user_id, me.id)), [], 'file records deleted')
  t.equal(await app.storage.read(file.object_key), undefined, 'and the stored object')

  await app.activity.flush()
  const kept = await Promise.all(before.map(async (a) => (await app.db.select().from(activityLog).where(eq(activityLog.log_id, a.log_id)))[0]))
  t.equal(kept.filter(Boolean).length, before.length, 'every audit row is kept')
  t.ok(kept.every((a) => a.user_id === null), 'with the actor nulled')
  const [deletion] = (await audits(app, 'account_delete')).filter((a) => a.target_user_id === me.id)
  t.ok(deletion, 'the deletion is audited')
  t.equal(deletion.user_id, null)
  t.equal(deletion.level, 'warning')

  for (const token of [me.access, me.session, laptop.access_token, laptop.session_token]) {
    t.equal((await call(app, 'GET', '/settings/profile', token)).statusCode, 401, 'SR-21: token fails')
  }
  t.equal((await refresh(app, laptop.refresh_token)).statusCode, 401)
  const login = await loginStatus(app, me.email, me.password!)
  t.equal(login.statusCode, 401, 'the old identifier no longer logs in')
  t.equal(login.json().error.code, 'AUTH_INVALID_CREDENTIALS')
  const reused = await createUser(app, { email: me.email, phone_number: '+14155550142', user_name: 'leaving_user' })
  t.ok(reused.user_id, 'email, phone and user name are free again')

  const viewer = await actor(app)
  t.equal((await call(app, 'GET', `/settings/profile/${me.id}`, viewer)).statusCode, 404, 'the profile is gone')
})

t.test('a failed deletion changes nothing (one transaction)', async (t) => {
  const app = await build(t, fastEnv)
  const admin = await actor(app, { groups: ['super_admin'] })
  await call(app, 'PUT', '/settings/profile', admin, { first_name: 'Root' })
  const before = await userRow(app, admin.id)
  await app.activity.flush()
  const auditBefore = await app.db.select().from(activityLog).where(eq(activityLog.user_id, admin.id))
  const res = await call(app, 'POST', '/settings/delete-account', admin)
  t.equal(res.statusCode, 409, 'the last super admin cannot delete itself')
  t.equal(res.json().error.code, 'LAST_SUPER_ADMIN')
  t.same(await userRow(app, admin.id), before, 'the account is untouched')
  t.equal((await app.db.select().from(session).where(eq(session.user_id, admin.id))).length, 1, 'sessions kept')
  await app.activity.flush()
  t.ok((await app.db.select().from(activityLog).where(eq(activityLog.user_id, admin.id))).length >= auditBefore.length, 'audit actors kept')
  t.equal((await call(app, 'GET', '/settings/profile', admin)).statusCode, 200)
})
