import t from 'tap'
import { eq } from 'drizzle-orm'
import { build } from '../helpers/build.ts'
import { login } from '../helpers/users.ts'
import { lastCode, strongPassword } from '../helpers/otp.ts'
import { activityLog, session, user } from '../../db/schema/index.ts'
import { actor, audits, call, fastEnv, groupWith, newSession, userRow } from './helpers.ts'

/** Admin user management (issue 19): P/users create, read, update, delete, sessions, password reset, unlock. */
const app = await build(t, fastEnv)
const superAdmin = await actor(app, { groups: ['super_admin'] })
// The admin group holds manage_users and view_user, not add/edit/delete_permission or test_sentry.
const admin = await actor(app, { groups: ['admin'] })
await groupWith(app, 'user_viewers', ['view_user'])
const viewer = await actor(app, { groups: ['user_viewers'] })
const plain = await actor(app)

const auditFor = async (action: string, targetUserId: string) => (await audits(app, action)).filter((r) => r.target_user_id === targetUserId)

t.test('SR-24: view_user reads; without manage_users every change is 403', async (t) => {
  const target = await actor(app)
  t.equal((await call(app, 'GET', `/users/${target.id}`, viewer)).statusCode, 200, 'GET user')
  t.equal((await call(app, 'GET', `/users/${target.id}/sessions`, viewer)).statusCode, 200, 'GET sessions')
  t.equal((await call(app, 'GET', `/users/${target.id}`, plain)).statusCode, 403, 'a plain user does not read others')
  const changes: Array<[string, string, unknown]> = [
    ['POST', '/users', { email: 'nope@example.test', password: strongPassword }],
    ['PATCH', `/users/${target.id}`, { first_name: 'Nope' }],
    ['DELETE', `/users/${target.id}`, undefined],
    ['DELETE', `/users/${target.id}/sessions`, undefined],
    ['DELETE', `/users/${target.id}/sessions/${target.sessionId}`, undefined],
    ['POST', `/users/${target.id}/password-reset`, {}],
    ['POST', `/users/${target.id}/unlock`, undefined],
    ['POST', `/users/${target.id}/invitation`, {}]
  ]
  for (const [method, url, payload] of changes) {
    const res = await call(app, method as 'POST', url, viewer, payload)
    t.equal(res.statusCode, 403, `${method} ${url}`)
    t.equal(res.json().error.code, 'FORBIDDEN')
  }
  t.equal((await userRow(app, target.id)).status, 'active', 'nothing changed')
  t.same(await app.db.select().from(user).where(eq(user.email, 'nope@example.test')), [])
})

t.test('SR-27: a manager cannot create or promote a super admin, nor change one', async (t) => {
  const create = await call(app, 'POST', '/users', admin, { email: 'boss@example.test', password: strongPassword, groups: ['super_admin'] })
  t.equal(create.statusCode, 403)
  t.equal(create.json().error.code, 'PRIVILEGE_ESCALATION')
  t.same(await app.db.select().from(user).where(eq(user.email, 'boss@example.test')), [], 'no account was created')
  await groupWith(app, 'permission_editors_x', ['edit_permission'])
  const beyond = await call(app, 'POST', '/users', admin, { email: 'editor@example.test', password: strongPassword, groups: ['permission_editors_x'] })
  t.equal(beyond.json().error.code, 'PRIVILEGE_ESCALATION', 'a group granting a permission the manager lacks')
  t.same(beyond.json().error.details.not_held, ['edit_permission'])

  const target = await actor(app)
  const promote = await call(app, 'POST', `/users/${target.id}/groups`, admin, { groups: ['super_admin'], action: 'add' })
  t.equal(promote.json().error.code, 'PRIVILEGE_ESCALATION', 'promoting an existing user')

  const otherSuper = await actor(app, { groups: ['super_admin'] })
  for (const [method, url, payload] of [
    ['PATCH', `/users/${otherSuper.id}`, { first_name: 'Demoted' }],
    ['PATCH', `/users/${otherSuper.id}`, { is_active: false }],
    ['DELETE', `/users/${otherSuper.id}`, undefined],
    ['DELETE', `/users/${otherSuper.id}/sessions`, undefined],
    ['POST', `/users/${otherSuper.id}/password-reset`, {}],
    ['POST', `/users/${otherSuper.id}/unlock`, undefined]
  ] as const) {
    const res = await call(app, method, url, admin, payload)
    t.equal(res.statusCode, 403, `${method} ${url} on a super admin`)
    t.equal(res.json().error.code, 'PRIVILEGE_ESCALATION')
  }
  const row = await userRow(app, otherSuper.id)
  t.equal(row.first_name, null)
  t.equal(row.status, 'active')
  t.equal((await call(app, 'GET', '/settings', otherSuper)).statusCode, 200, 'the super admin\'s session still works')

  const bySuper = await call(app, 'POST', '/users', superAdmin, { email: 'boss@example.test', password: strongPassword, groups: ['super_admin'] })
  t.equal(bySuper.statusCode, 201, 'a super admin can')
})

t.test('POST P/users with a password: the account works at once, audited with actor and target', async (t) => {
  const res = await call(app, 'POST', '/users', admin, {
    email: 'New.Person@Example.test', phone_number: '+1 415 555 0199', password: strongPassword, first_name: 'New', is_email_verified: true, country: 'fr'
  })
  t.equal(res.statusCode, 201, res.body)
  const { user: created, invitation } = res.json().data
  t.equal(invitation, null)
  t.equal(created.email, 'new.person@example.test')
  t.equal(created.phone_number, '+14155550199')
  t.equal(created.country, 'FR')
  t.equal(created.is_email_verified, true)
  t.equal(created.is_phone_verified, false)
  t.equal(created.has_password, true)
  t.notOk(res.body.includes(strongPassword) || res.body.includes('argon2'), 'no password in the answer')
  const groups = (await call(app, 'GET', `/users/${created.user_id}/groups`, admin)).json().data.map((g: { codename: string }) => g.codename)
  t.same(groups, ['user'], 'the default group')
  const session = await login(app, 'new.person@example.test', strongPassword)
  t.equal(session.user.user_id, created.user_id)
  const [row] = await auditFor('user_create', created.user_id)
  t.equal(row.user_id, admin.id, 'the actor')

  const taken = await call(app, 'POST', '/users', admin, { email: 'new.person@example.test', password: strongPassword })
  t.equal(taken.statusCode, 409)
  t.equal(taken.json().error.code, 'EMAIL_TAKEN')
  t.equal((await call(app, 'POST', '/users', admin, { first_name: 'Nobody' })).statusCode, 400, 'an email or a phone number is required')
})

t.test('GET and PATCH P/users/{user_id}', async (t) => {
  const target = await actor(app, { email: 'patch.me@example.test' })
  const got = await call(app, 'GET', `/users/${target.id}`, viewer)
  t.equal(got.json().data.email, 'patch.me@example.test')
  t.notOk(got.body.includes('argon2'))
  t.equal((await call(app, 'GET', '/users/00000000-0000-4000-8000-000000000000', viewer)).statusCode, 404)

  const res = await call(app, 'PATCH', `/users/${target.id}`, admin, { first_name: 'Patched', language: 'fr', email: 'patched@example.test', bio: null })
  t.equal(res.statusCode, 200, res.body)
  t.equal(res.json().data.first_name, 'Patched')
  t.equal(res.json().data.email, 'patched@example.test')
  t.equal(res.json().data.is_email_verified, false, 'a new address is unverified unless the body says so')
  const verified = await call(app, 'PATCH', `/users/${target.id}`, admin, { is_email_verified: true })
  t.equal(verified.json().data.is_email_verified, true)
  const row = (await auditFor('user_update', target.id)).find((r) => (r.metadata as { fields: string[] }).fields.includes('first_name'))!
  t.equal(row.user_id, admin.id)
  t.same((row.metadata as { fields: string[] }).fields, ['email', 'first_name', 'is_email_verified', 'language'], 'the changed fields, never their values')
  t.equal((await call(app, 'PATCH', `/users/${target.id}`, admin, { password: 'x' })).statusCode, 400, 'no password field (strict body)')
  t.equal((await call(app, 'PATCH', `/users/${target.id}`, admin, { user_type: 'admin' })).statusCode, 400, 'no user_type')

  // Deactivation takes effect on the target's next request.
  t.equal((await call(app, 'GET', '/settings', target)).statusCode, 200)
  const off = await call(app, 'PATCH', `/users/${target.id}`, admin, { is_active: false })
  t.equal(off.json().data.is_active, false)
  t.equal((await call(app, 'GET', '/settings', target)).statusCode, 401, 'the next request is refused')
  t.equal((await auditFor('user_deactivate', target.id)).length, 1)
})

t.test('DELETE P/users/{user_id}: tokens refused on the next request, personal fields gone, activity rows kept (SR-38)', async (t) => {
  const target = await actor(app, { email: 'leaving@example.test', phone_number: '+14155550177', user_name: 'leaving_user' })
  await app.db.update(user).set({ first_name: 'Lea', last_name: 'Ving', bio: 'bye', country: 'DE' }).where(eq(user.user_id, target.id))
  const second = await newSession(app, target.id)
  t.equal((await call(app, 'GET', '/settings', target)).statusCode, 200)
  // A login writes activity rows naming the user (and a third session).
  await login(app, 'leaving@example.test', target.password!)
  await app.activity.flush()
  const ownRows = await app.db.select().from(activityLog).where(eq(activityLog.user_id, target.id))
  t.ok(ownRows.length > 0, 'the user has activity rows')

  t.equal((await call(app, 'DELETE', `/users/${admin.id}`, admin)).statusCode, 409, 'not your own account here')
  const res = await call(app, 'DELETE', `/users/${target.id}`, admin)
  t.equal(res.statusCode, 200, res.body)
  t.same(res.json().data, { user_id: target.id, status: 'deleted', revoked_sessions: 3 })

  t.equal((await call(app, 'GET', '/settings', target)).statusCode, 401, 'the access token is refused')
  t.equal((await call(app, 'GET', '/settings', second.access_token)).statusCode, 401, 'every session')
  const refresh = await app.inject({ method: 'POST', url: '/api/v1/auth/refresh-token', payload: { refresh_token: target.refresh } })
  t.equal(refresh.statusCode, 401, 'the refresh token too')

  const row = await userRow(app, target.id)
  for (const field of ['email', 'phone_number', 'user_name', 'first_name', 'last_name', 'bio', 'country', 'password', 'profile_picture_url'] as const) {
    t.equal(row[field], null, `${field} is gone`)
  }
  t.equal(row.status, 'deleted')
  t.same(await app.db.select().from(session).where(eq(session.user_id, target.id)), [], 'no session rows')
  await app.activity.flush()
  const after = await app.db.select().from(activityLog).where(eq(activityLog.user_id, target.id))
  t.ok(after.length >= ownRows.length, 'the activity rows keep the user id')
  const [audit] = await auditFor('user_delete', target.id)
  t.equal(audit.user_id, admin.id)

  t.equal((await call(app, 'GET', `/users/${target.id}`, admin)).statusCode, 404, 'gone for the API')
  t.equal((await call(app, 'DELETE', `/users/${target.id}`, admin)).statusCode, 404)
  t.equal((await call(app, 'PATCH', `/users/${target.id}`, admin, { first_name: 'Back' })).statusCode, 404)
  const relogin = await app.inject({ method: 'POST', url: '/api/v1/auth/login-with-password', payload: { identifier: 'leaving@example.test', password: target.password } })
  t.equal(relogin.statusCode, 401, 'no login with the old address')
})

t.test('GET/DELETE P/users/{user_id}/sessions[/{session_id}]', async (t) => {
  const target = await actor(app)
  const second = await newSession(app, target.id)
  const listed = await call(app, 'GET', `/users/${target.id}/sessions`, viewer)
  t.same(listed.json().data.map((s: { session_id: string }) => s.session_id).sort(), [target.sessionId, second.session_id].sort())
  t.notOk(listed.body.includes(target.refresh), 'no tokens')

  const one = await call(app, 'DELETE', `/users/${target.id}/sessions/${second.session_id}`, admin)
  t.same(one.json().data, { revoked_sessions: 1 })
  t.equal((await call(app, 'GET', '/settings', second.access_token)).statusCode, 401, 'that session ends at once')
  t.equal((await call(app, 'GET', '/settings', target)).statusCode, 200, 'the other one goes on')
  t.equal((await call(app, 'DELETE', `/users/${target.id}/sessions/${second.session_id}`, admin)).statusCode, 404, 'no longer active')
  t.equal((await call(app, 'DELETE', `/users/${plain.id}/sessions/${target.sessionId}`, admin)).statusCode, 404, 'a session of another user')

  const all = await call(app, 'DELETE', `/users/${target.id}/sessions`, admin)
  t.same(all.json().data, { revoked_sessions: 1 })
  t.equal((await call(app, 'GET', '/settings', target)).statusCode, 401)
  const rows = await auditFor('user_sessions_revoke', target.id)
  t.equal(rows.length, 2)
  t.ok(rows.every((r) => r.user_id === admin.id))
})

t.test('POST P/users/{user_id}/password-reset sends a reset code, never a password', async (t) => {
  const target = await actor(app, { email: 'reset.me@example.test' })
  const res = await call(app, 'POST', `/users/${target.id}/password-reset`, admin)
  t.equal(res.statusCode, 200, res.body)
  t.equal(res.json().data.channel, 'email')
  t.notOk(/password"\s*:/.test(res.body), 'no password field in the answer')
  const code = lastCode(app, 'reset.me@example.test', 'reset_password')
  t.notOk(res.body.includes(code), 'nor the code')
  const reset = await app.inject({ method: 'POST', url: '/api/v1/auth/forget-password', payload: { email: 'reset.me@example.test', otp: code, new_password: strongPassword } })
  t.equal(reset.statusCode, 200, reset.body)
  t.equal((await call(app, 'GET', '/settings', target)).statusCode, 401, 'the reset signed the user out')
  await login(app, 'reset.me@example.test', strongPassword)
  t.equal((await auditFor('user_password_reset_sent', target.id))[0].user_id, admin.id)
  const phoneless = await call(app, 'POST', `/users/${target.id}/password-reset`, admin, { channel: 'sms' })
  t.equal(phoneless.json().error.code, 'NO_CONTACT_ADDRESS')
})

t.test('POST P/users/{user_id}/unlock lifts a lockout', async (t) => {
  const target = await actor(app, { email: 'locked@example.test' })
  const wrong = { identifier: 'locked@example.test', password: 'not the password at all' }
  let locked = false
  for (let i = 0; i < app.config.LOGIN_LOCKOUT_THRESHOLD + 1 && !locked; i++) {
    const res = await app.inject({ method: 'POST', url: '/api/v1/auth/login-with-password', payload: wrong })
    locked = res.statusCode === 429
  }
  const refused = await app.inject({ method: 'POST', url: '/api/v1/auth/login-with-password', payload: { identifier: 'locked@example.test', password: target.password } })
  t.equal(refused.statusCode, 429, 'locked, even with the right password')
  const res = await call(app, 'POST', `/users/${target.id}/unlock`, admin)
  t.same(res.json().data, { user_id: target.id, unlocked: true })
  await login(app, 'locked@example.test', target.password!)
  const [row] = await auditFor('user_unlock', target.id)
  t.equal(row.user_id, admin.id)
  t.same((await call(app, 'POST', `/users/${target.id}/unlock`, admin)).json().data.unlocked, false, 'nothing left to lift')
  t.equal((await auditFor('user_unlock', target.id)).length, 2)
})
