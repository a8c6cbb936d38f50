import t from 'tap'
import { readFileSync } from 'node:fs'
import { eq, sql } from 'drizzle-orm'
import { generate } from 'otplib'
import { session } from '../../db/schema/index.ts'
import { actor, fastEnv } from '../admin/helpers.ts'
import { bearer, createUser, defaultPassword } from '../helpers/users.ts'
import { build, lastCode, post, sendCode, strongPassword } from '../helpers/otp.ts'

/**
 * Issue 18: `device_name` given at login names the session. Password login, OTP
 * login, sign-up, `P/token` and an MFA login (the name rides on the ticket) store it;
 * the own and the admin session lists show it as `device_name`, with the parsed user
 * agent beside it as `device`. The schema bounds it and refuses control characters.
 */
const firefox = 'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0'
const app = await build(t, fastEnv)
const ua = { 'user-agent': firefox }

async function storedName (sessionId: string) {
  const [row] = await app.db.select({ device_name: session.device_name, device: session.device }).from(session).where(eq(session.session_id, sessionId))
  return row
}

async function ownList (access: string) {
  const res = await app.inject({ url: '/api/v1/auth/sessions', headers: bearer(access) })
  if (res.statusCode !== 200) throw new Error(`sessions: ${res.statusCode} ${res.body}`)
  return res.json().data as Array<{ session_id: string, device_name: string | null, device: string | null, current: boolean }>
}

t.test('issue 18: password login names its session; both session lists show it next to the parsed user agent', async (t) => {
  const u = await createUser(app)
  const named = await post(app, '/auth/login-with-password', { identifier: u.email, password: defaultPassword, device_name: '  Alice’s laptop  ' }, { headers: ua })
  t.equal(named.statusCode, 200, named.body)
  const tokens = named.json().data
  t.same(await storedName(tokens.session_id), { device_name: 'Alice’s laptop', device: 'Firefox on Linux' }, 'stored trimmed, beside the parsed device')

  const unnamed = (await post(app, '/auth/login-with-password', { identifier: u.email, password: defaultPassword }, { headers: ua })).json().data
  t.same(await storedName(unnamed.session_id), { device_name: null, device: 'Firefox on Linux' })
  const blank = (await post(app, '/auth/login-with-password', { identifier: u.email, password: defaultPassword, device_name: '   ' }, { headers: ua })).json().data
  t.same(await storedName(blank.session_id), { device_name: null, device: 'Firefox on Linux' }, 'a blank name is no name')

  const own = await ownList(tokens.access_token)
  const mine = own.find((s) => s.session_id === tokens.session_id)
  t.match(mine, { device_name: 'Alice’s laptop', device: 'Firefox on Linux', current: true })
  t.match(own.find((s) => s.session_id === unnamed.session_id), { device_name: 'Firefox on Linux', device: 'Firefox on Linux' }, 'without a name, the parsed device')

  const admin = await actor(app, { groups: ['super_admin'] })
  const listed = await app.inject({ url: `/api/v1/users/${u.user_id}/sessions`, headers: admin.headers })
  t.equal(listed.statusCode, 200, listed.body)
  t.match(listed.json().data.find((s: { session_id: string }) => s.session_id === tokens.session_id), { device_name: 'Alice’s laptop', device: 'Firefox on Linux' }, 'the admin list too')
})

t.test('issue 18: OTP login, sign-up and P/token take device_name', async (t) => {
  const u = await createUser(app)
  await sendCode(app, { email: u.email, purpose: 'login' })
  const otp = await post(app, '/auth/login-with-otp', { email: u.email, otp: lastCode(app, u.email!, 'login'), device_name: 'Kitchen tablet' }, { headers: ua })
  t.equal(otp.statusCode, 200, otp.body)
  t.equal((await storedName(otp.json().data.session_id)).device_name, 'Kitchen tablet')

  const email = 'named-signup@example.com'
  await sendCode(app, { email, purpose: 'signup' })
  const signup = await post(app, '/auth/verify', { email, otp: lastCode(app, email, 'signup'), password: strongPassword, device_name: 'First phone' })
  t.equal(signup.statusCode, 201, signup.body)
  t.equal((await storedName(signup.json().data.session_id)).device_name, 'First phone')

  const form = new URLSearchParams({ grant_type: 'password', username: u.email!, password: defaultPassword, device_name: 'Swagger UI' })
  const oauth = await app.inject({ method: 'POST', url: '/api/v1/token', payload: form.toString(), headers: { 'content-type': 'application/x-www-form-urlencoded' } })
  t.equal(oauth.statusCode, 200, oauth.body)
  t.equal((await storedName(oauth.json().session_id)).device_name, 'Swagger UI')
})

t.test('issue 18: an MFA login keeps the device_name of its first step', async (t) => {
  let clock = Date.now()
  const mfaApp = await build(t, fastEnv, { now: () => clock })
  const u = await createUser(mfaApp)
  const first = (await post(mfaApp, '/auth/login-with-password', { identifier: u.email, password: defaultPassword })).json().data
  const start = (await mfaApp.inject({ method: 'POST', url: '/api/v1/auth/mfa/totp', headers: bearer(first.access_token) })).json().data
  const code = async () => generate({ secret: start.secret, epoch: Math.floor(clock / 1000) })
  const confirmed = await mfaApp.inject({ method: 'POST', url: '/api/v1/auth/mfa/totp/verify', headers: bearer(first.access_token), payload: { factor_id: start.factor_id, code: await code() } })
  t.equal(confirmed.statusCode, 200, confirmed.body)
  clock += 30_000

  const step = await post(mfaApp, '/auth/login-with-password', { identifier: u.email, password: defaultPassword, device_name: 'Work desktop' })
  t.equal(step.json().data.mfa_required, true)
  const done = await post(mfaApp, '/auth/mfa/challenge', { mfa_ticket: step.json().data.mfa_ticket, code: await code() })
  t.equal(done.statusCode, 200, done.body)
  const [row] = await mfaApp.db.select({ device_name: session.device_name }).from(session).where(eq(session.session_id, done.json().data.session_id))
  t.equal(row.device_name, 'Work desktop')
})

t.test('issue 18: the schema refuses control characters and over-long names', async (t) => {
  const u = await createUser(app)
  for (const bad of ['tab\there', 'new\nline', 'bell\u0007', 'c1\u0085', 'bidi \u202Eevil', 'x'.repeat(101)]) {
    const res = await post(app, '/auth/login-with-password', { identifier: u.email, password: defaultPassword, device_name: bad })
    t.equal(res.statusCode, 400, JSON.stringify(bad))
    t.equal(res.json().error.code, 'VALIDATION_ERROR')
    t.match(res.json().error.details, [{ field: 'body/device_name' }])
  }
  const ok = await post(app, '/auth/login-with-password', { identifier: u.email, password: defaultPassword, device_name: 'Pixel 8 — 工作' })
  t.equal(ok.statusCode, 200, 'letters of any script, punctuation and spaces are fine')
})

t.test('issue 18: migration 0005 moves the parsed label of existing sessions from device_name to device', async (t) => {
  const u = await createUser(app)
  const old = await app.sessions.create(u, { ip: '127.0.0.1', method: 'password' })
  // A row as the previous version wrote it: the parsed user agent in device_name.
  await app.db.update(session).set({ device_name: 'Chrome on macOS', device: null }).where(eq(session.session_id, old.session_id))
  const statements = readFileSync(new URL('../../db/migrations/0005_session_device.sql', import.meta.url), 'utf8').split('--> statement-breakpoint')
  const backfill = statements.find((s) => s.includes('UPDATE'))
  t.ok(backfill, 'the migration has its backfill')
  await app.db.execute(sql.raw(backfill!))
  t.same(await storedName(old.session_id), { device_name: null, device: 'Chrome on macOS' })
  const listed = await ownList(old.access_token)
  t.match(listed.find((s) => s.session_id === old.session_id), { device_name: 'Chrome on macOS', device: 'Chrome on macOS' }, 'and the list still shows it')
})
