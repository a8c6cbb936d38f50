import t from 'tap'
import { and, eq } from 'drizzle-orm'
import { generate } from 'otplib'
import type { FastifyInstance } from 'fastify'
import { build } from '../helpers/build.ts'
import { bearer, createUser, defaultPassword, login, setActive } from '../helpers/users.ts'
import { SoftAuthenticator } from '../helpers/webauthn.ts'
import { readOutbox } from '../helpers/otp.ts'
import { activityLog, passkey, session } from '../../db/schema/index.ts'
import { ConfigError, loadConfig, relyingParty } from '../../config.ts'

const api = '/api/v1'
const origin = 'http://localhost:3000'
const rpId = 'localhost'

// TOTP codes are computed for this clock (the app's `now`).
const clock = Date.now()
const now = () => clock

let shared: FastifyInstance | undefined
const app0 = async () => (shared ??= await build(t, { AUTH_RATE_LIMIT_PER_IDENTIFIER: '100', AUTH_RATE_LIMIT_PER_IP: '1000' }, { now }))

const claims = (jwt: string) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString()) as { amr?: string[], aal?: number, sid: string }
const post = (app: FastifyInstance, path: string, payload?: unknown, token?: string) =>
  app.inject({ method: 'POST', url: `${api}/auth/passkeys/${path}`, ...(payload === undefined ? {} : { payload: payload as object }), headers: token ? bearer(token) : {} })
const loginOptions = async (app: FastifyInstance, identifier?: string) => {
  const res = await post(app, 'login/options', identifier === undefined ? undefined : { identifier })
  if (res.statusCode !== 200) throw new Error(`login options: ${res.statusCode} ${res.body}`)
  return res.json().data
}
const signIn = (app: FastifyInstance, credential: unknown) => post(app, 'login/verify', { credential })

/** A user, a fresh login, and a passkey registered by a software authenticator. */
async function registered (app: FastifyInstance) {
  const u = await createUser(app)
  const tokens = await login(app, u.email!)
  const authenticator = new SoftAuthenticator({ origin, rpId })
  const options = await post(app, 'register/options', undefined, tokens.access_token)
  if (options.statusCode !== 200) throw new Error(`register options: ${options.body}`)
  const res = await post(app, 'register/verify', { credential: authenticator.create(options.json().data) }, tokens.access_token)
  if (res.statusCode !== 200) throw new Error(`register verify: ${res.body}`)
  return { u, tokens, authenticator, passkey: res.json().data as { id: string, name: string } }
}

async function auditRows (app: FastifyInstance, userId: string, action: string) {
  await app.activity.flush()
  return app.db.select().from(activityLog).where(and(eq(activityLog.target_user_id, userId), eq(activityLog.action, action)))
}

t.test('registers a passkey, then signs in with an identifier and without one (discoverable): amr webauthn, aal 2, audited (SR-38)', async (t) => {
  const app = await app0()
  const u = await createUser(app)
  const tokens = await login(app, u.email!)
  const options = (await post(app, 'register/options', undefined, tokens.access_token)).json().data
  t.equal(options.rp.id, rpId)
  t.equal(options.user.name, u.email)
  t.not(options.user.id, u.user_id, 'the user handle is base64url bytes, not the id text')
  t.equal(options.authenticatorSelection.userVerification, 'required')
  t.equal(options.authenticatorSelection.residentKey, 'required')
  t.equal(options.attestation, 'none')
  const authenticator = new SoftAuthenticator({ origin, rpId })
  const created = await post(app, 'register/verify', { credential: authenticator.create(options), name: 'Laptop' }, tokens.access_token)
  t.equal(created.statusCode, 200, created.body)
  t.match(created.json().data, { name: 'Laptop', device_type: 'single_device', backed_up: false, backup_eligible: false, transports: ['internal'], last_used_at: null })
  const [row] = await app.db.select().from(passkey).where(eq(passkey.user_id, u.user_id))
  t.equal(row.credential_id, authenticator.id)
  t.equal(row.counter, 0)

  const named = await loginOptions(app, u.email!)
  t.same(named.allowCredentials.map((c: { id: string }) => c.id), [authenticator.id], 'with an identifier: that account\'s passkeys')
  t.equal(named.userVerification, 'required')
  const withId = await signIn(app, authenticator.get(named))
  t.equal(withId.statusCode, 200, withId.body)
  const bundle = withId.json().data
  t.same(claims(bundle.access_token).amr, ['webauthn'])
  t.equal(claims(bundle.access_token).aal, 2)
  t.equal(claims(bundle.session_token).aal, 2)
  t.equal(bundle.user.user_id, u.user_id)
  const [opened] = await app.db.select().from(session).where(eq(session.session_id, bundle.session_id))
  t.equal(opened.auth_method, 'webauthn')
  const me = await app.inject({ method: 'GET', url: `${api}/auth/passkeys`, headers: bearer(bundle.access_token) })
  t.equal(me.statusCode, 200, 'the tokens work')

  const usernameless = await loginOptions(app)
  t.notOk(usernameless.allowCredentials?.length, 'without an identifier: no list, the browser offers its discoverable passkeys')
  const discovered = await signIn(app, authenticator.get(usernameless))
  t.equal(discovered.statusCode, 200, discovered.body)
  t.equal(discovered.json().data.user.user_id, u.user_id)

  const [used] = await app.db.select().from(passkey).where(eq(passkey.user_id, u.user_id))
  t.equal(used.counter, 2, 'the signature counter is kept')
  t.ok(used.last_used_at)
  const logins = await auditRows(app, u.user_id, 'login_success')
  t.equal(logins.filter((r) => (r.metadata as { method?: string }).method === 'webauthn').length, 2, 'each passkey sign-in writes login_success with method webauthn')
  t.equal((await auditRows(app, u.user_id, 'passkey_registered')).length, 1)
})

t.test('a replayed assertion is refused: a challenge works once, even sent twice at the same moment', async (t) => {
  const app = await app0()
  const { authenticator } = await registered(app)
  const assertion = authenticator.get(await loginOptions(app))
  t.equal((await signIn(app, assertion)).statusCode, 200)
  const replay = await signIn(app, assertion)
  t.equal(replay.statusCode, 400)
  t.equal(replay.json().error.code, 'PASSKEY_CHALLENGE_INVALID')
  const racing = authenticator.get(await loginOptions(app))
  const both = await Promise.all([signIn(app, racing), signIn(app, racing)])
  t.same(both.map((r) => r.statusCode).sort(), [200, 400], 'one of two concurrent uses wins')
})

t.test('a wrong origin is refused, at sign-in and at registration; the failed attempt spends the challenge', async (t) => {
  const app = await app0()
  const { u, authenticator } = await registered(app)
  const options = await loginOptions(app, u.email!)
  const phished = await signIn(app, authenticator.get(options, { origin: 'https://login.evil.example' }))
  t.equal(phished.statusCode, 401)
  t.equal(phished.json().error.code, 'PASSKEY_INVALID')
  const retried = await signIn(app, authenticator.get(options))
  t.equal(retried.json().error.code, 'PASSKEY_CHALLENGE_INVALID', 'the challenge died with the failed attempt')
  const failed = await auditRows(app, u.user_id, 'login_failed')
  t.ok(failed.some((r) => (r.metadata as { method?: string, reason?: string }).reason === 'verification_failed'), 'the refusal is audited')

  const other = await createUser(app)
  const tokens = await login(app, other.email!)
  const registration = (await post(app, 'register/options', undefined, tokens.access_token)).json().data
  const res = await post(app, 'register/verify', { credential: new SoftAuthenticator({ origin, rpId }).create(registration, { origin: 'http://localhost:4000' }) }, tokens.access_token)
  t.equal(res.statusCode, 400)
  t.equal(res.json().error.code, 'PASSKEY_REGISTRATION_FAILED')
  t.equal((await app.db.select().from(passkey).where(eq(passkey.user_id, other.user_id))).length, 0, 'nothing registered')
})

t.test('a wrong relying party id is refused, at sign-in and at registration', async (t) => {
  const app = await app0()
  const { authenticator } = await registered(app)
  const res = await signIn(app, authenticator.get(await loginOptions(app), { rpId: 'evil.example' }))
  t.equal(res.statusCode, 401)
  t.equal(res.json().error.code, 'PASSKEY_INVALID')
  t.equal((await signIn(app, authenticator.get(await loginOptions(app)))).statusCode, 200, 'the right RP id still works')

  const other = await createUser(app)
  const tokens = await login(app, other.email!)
  const registration = (await post(app, 'register/options', undefined, tokens.access_token)).json().data
  const created = await post(app, 'register/verify', { credential: new SoftAuthenticator({ origin, rpId }).create(registration, { rpId: 'evil.example' }) }, tokens.access_token)
  t.equal(created.json().error.code, 'PASSKEY_REGISTRATION_FAILED')
})

t.test('a signature counter that goes backwards (or stands still) is refused and audited as critical; an authenticator without a counter keeps working', async (t) => {
  const app = await app0()
  const { u, authenticator } = await registered(app)
  t.equal((await signIn(app, authenticator.get(await loginOptions(app), { counter: 5 }))).statusCode, 200)
  const backwards = await signIn(app, authenticator.get(await loginOptions(app), { counter: 3 }))
  t.equal(backwards.statusCode, 401)
  t.equal(backwards.json().error.code, 'PASSKEY_INVALID')
  const same = await signIn(app, authenticator.get(await loginOptions(app), { counter: 5 }))
  t.equal(same.statusCode, 401, 'an equal non-zero counter is refused too')
  const alarms = await auditRows(app, u.user_id, 'passkey_counter_regression')
  t.equal(alarms.length, 2)
  t.equal(alarms[0].level, 'critical')
  t.match(alarms[0].metadata, { stored_counter: 5 })
  t.equal((await signIn(app, authenticator.get(await loginOptions(app), { counter: 6 }))).statusCode, 200, 'the genuine authenticator, further on, still works')
  const [row] = await app.db.select().from(passkey).where(eq(passkey.user_id, u.user_id))
  t.equal(row.counter, 6)

  const counterless = await registered(app)
  for (let i = 0; i < 2; i++) {
    const res = await signIn(app, counterless.authenticator.get(await loginOptions(app), { counter: 0 }))
    t.equal(res.statusCode, 200, 'counter 0 on both sides: the authenticator keeps no counter (synced passkeys)')
  }
})

t.test('an account with TOTP signs in with its passkey and gets aal 2 tokens without the MFA ticket; adding the passkey needed the second factor', async (t) => {
  const app = await app0()
  const u = await createUser(app)
  const first = await login(app, u.email!)
  const start = (await app.inject({ method: 'POST', url: `${api}/auth/mfa/totp`, headers: bearer(first.access_token) })).json().data
  const enrol = await app.inject({ method: 'POST', url: `${api}/auth/mfa/totp/verify`, headers: bearer(first.access_token), payload: { factor_id: start.factor_id, code: await generate({ secret: start.secret, epoch: Math.floor(clock / 1000) }) } })
  t.equal(enrol.statusCode, 200)
  const weak = await post(app, 'register/options', undefined, first.access_token)
  t.equal(weak.statusCode, 403)
  t.equal(weak.json().error.code, 'MFA_STEP_UP_REQUIRED', 'an aal 1 session of an account with a factor cannot add an aal 2 credential')

  const ticket = (await app.inject({ method: 'POST', url: `${api}/auth/login-with-password`, payload: { identifier: u.email, password: defaultPassword } })).json().data
  t.equal(ticket.mfa_required, true)
  // The next time step's code (±1 step is accepted; the enrolment spent this one).
  const strong = await app.inject({ method: 'POST', url: `${api}/auth/mfa/challenge`, payload: { mfa_ticket: ticket.mfa_ticket, code: await generate({ secret: start.secret, epoch: Math.floor(clock / 1000) + 30 }) } })
  t.equal(strong.statusCode, 200, strong.body)
  const access = strong.json().data.access_token
  const authenticator = new SoftAuthenticator({ origin, rpId })
  const options = (await post(app, 'register/options', undefined, access)).json().data
  t.equal((await post(app, 'register/verify', { credential: authenticator.create(options) }, access)).statusCode, 200)

  const res = await signIn(app, authenticator.get(await loginOptions(app, u.email!)))
  t.equal(res.statusCode, 200, res.body)
  const data = res.json().data
  t.notOk(data.mfa_required, 'no MFA ticket')
  t.ok(data.access_token)
  t.same(claims(data.access_token).amr, ['webauthn'])
  t.equal(claims(data.access_token).aal, 2)
})

t.test('SR-23: adding and removing a passkey need a fresh login, and the owner is notified; listing and renaming do not; SR-25: another account\'s passkey is not found', async (t) => {
  const app = await app0()
  const { u, tokens, authenticator, passkey: created } = await registered(app)
  // The login is older than REAUTH_WINDOW_MINUTES.
  await app.db.update(session).set({ created_at: new Date(clock - 11 * 60_000) }).where(eq(session.session_id, claims(tokens.access_token).sid))
  const stale = await post(app, 'register/options', undefined, tokens.access_token)
  t.equal(stale.json().error.code, 'AUTH_REAUTH_REQUIRED')
  const refused = await app.inject({ method: 'DELETE', url: `${api}/auth/passkeys/${created.id}`, headers: bearer(tokens.access_token) })
  t.equal(refused.statusCode, 403)
  t.equal(refused.json().error.code, 'AUTH_REAUTH_REQUIRED')

  const list = await app.inject({ method: 'GET', url: `${api}/auth/passkeys`, headers: bearer(tokens.access_token) })
  t.equal(list.statusCode, 200)
  t.equal(list.json().data.passkeys.length, 1)
  t.same(Object.keys(list.json().data.passkeys[0]).sort(), ['backed_up', 'backup_eligible', 'created_at', 'device_type', 'id', 'last_used_at', 'name', 'transports'])
  t.notOk(list.body.includes(authenticator.id), 'the credential id and public key are not listed')
  const renamed = await app.inject({ method: 'PATCH', url: `${api}/auth/passkeys/${created.id}`, headers: bearer(tokens.access_token), payload: { name: 'Phone' } })
  t.equal(renamed.json().data.name, 'Phone')

  const intruder = await createUser(app)
  const theirs = await login(app, intruder.email!)
  t.equal((await app.inject({ method: 'DELETE', url: `${api}/auth/passkeys/${created.id}`, headers: bearer(theirs.access_token) })).json().error.code, 'PASSKEY_NOT_FOUND')
  t.equal((await app.inject({ method: 'PATCH', url: `${api}/auth/passkeys/${created.id}`, headers: bearer(theirs.access_token), payload: { name: 'Mine' } })).statusCode, 404)

  const fresh = await login(app, u.email!)
  const removed = await app.inject({ method: 'DELETE', url: `${api}/auth/passkeys/${created.id}`, headers: bearer(fresh.access_token) })
  t.equal(removed.statusCode, 200, removed.body)
  t.equal((await auditRows(app, u.user_id, 'passkey_removed')).length, 1)
  t.equal((await app.inject({ method: 'GET', url: `${api}/auth/passkeys`, headers: bearer(fresh.access_token) })).json().data.passkeys.length, 0)
  const gone = await signIn(app, authenticator.get(await loginOptions(app)))
  t.equal(gone.json().error.code, 'PASSKEY_INVALID', 'a removed passkey no longer signs in')
  await app.notify.settled()
  const notices = readOutbox(app).filter((m) => m.to === u.email)
  t.ok(notices.some((m) => m.template === 'passkey_added'), 'the owner is told a passkey was added')
  t.match(notices.find((m) => m.template === 'passkey_removed')?.text, /"Phone" was removed/, 'and which one was removed')
})

t.test('SR-21: a deactivated account cannot sign in with its passkey', async (t) => {
  const app = await app0()
  const { u, authenticator } = await registered(app)
  await setActive(app, u.user_id, false)
  const res = await signIn(app, authenticator.get(await loginOptions(app)))
  t.equal(res.statusCode, 403)
  t.equal(res.json().error.code, 'AUTH_ACCOUNT_INACTIVE')
})

t.test('challenges are bound to what they were issued for; SR-8: an unknown identifier gets options of the same shape; a credential registers once', async (t) => {
  const app = await app0()
  const alice = await registered(app)
  const bob = await registered(app)

  const forAlice = await loginOptions(app, alice.u.email!)
  const wrongAccount = await signIn(app, bob.authenticator.get(forAlice))
  t.equal(wrongAccount.json().error.code, 'PASSKEY_INVALID', 'an identifier\'s challenge is answered by that account\'s passkeys only')

  const registration = (await post(app, 'register/options', undefined, alice.tokens.access_token)).json().data
  const asLogin = await signIn(app, alice.authenticator.get({ challenge: registration.challenge, rpId }))
  t.equal(asLogin.json().error.code, 'PASSKEY_CHALLENGE_INVALID', 'a registration challenge does not sign in')
  const another = (await post(app, 'register/options', undefined, alice.tokens.access_token)).json().data
  const stolen = await post(app, 'register/verify', { credential: new SoftAuthenticator({ origin, rpId }).create(another) }, bob.tokens.access_token)
  t.equal(stolen.json().error.code, 'PASSKEY_CHALLENGE_INVALID', 'a registration challenge is its account\'s')

  const unknown = await loginOptions(app, 'nobody-here@example.com')
  t.same(Object.keys(unknown).sort(), Object.keys(forAlice).sort())
  t.equal(unknown.allowCredentials.length, 1)
  t.equal((await loginOptions(app, 'nobody-here@example.com')).allowCredentials[0].id, unknown.allowCredentials[0].id, 'the decoy is stable: asking again tells nothing')
  const decoyAnswer = await signIn(app, alice.authenticator.get(unknown))
  t.equal(decoyAnswer.json().error.code, 'PASSKEY_INVALID', 'nothing answers an unknown identifier\'s challenge')

  const again = (await post(app, 'register/options', undefined, alice.tokens.access_token)).json().data
  t.same(again.excludeCredentials.map((c: { id: string }) => c.id), [alice.authenticator.id], 'registered passkeys are excluded')
  const duplicate = await post(app, 'register/verify', { credential: alice.authenticator.create(again) }, alice.tokens.access_token)
  t.equal(duplicate.statusCode, 409)
  t.equal(duplicate.json().error.code, 'PASSKEY_ALREADY_REGISTERED')
})

t.test('SR-10: the identifier of a passkey sign-in has its own rate limit', async (t) => {
  const app = await build(t, { AUTH_RATE_LIMIT_PER_IDENTIFIER: '2', AUTH_RATE_LIMIT_PER_IP: '1000' })
  const codes = []
  for (let i = 0; i < 3; i++) codes.push((await post(app, 'login/options', { identifier: 'Limited@Example.com' })).statusCode)
  t.same(codes, [200, 200, 429])
  t.equal((await post(app, 'login/options', { identifier: 'other@example.com' })).statusCode, 200, 'other identifiers are not affected')
})

t.test('the relying party: localhost by default; production refuses to start without WEBAUTHN_RP_ID and WEBAUTHN_ORIGINS, or with an origin off the RP id', async (t) => {
  t.same(relyingParty(loadConfig({ PORT: '8080' })), { id: 'localhost', name: 'Auth API', origins: ['http://localhost:8080'] })
  const secret = 'a-production-secret-of-at-least-32-chars'
  const problems = (env: Record<string, string>) => {
    try { loadConfig(env); return [] } catch (error) { return (error as ConfigError).problems }
  }
  const missing = problems({ NODE_ENV: 'production', JWT_SECRET_KEY: secret })
  t.ok(missing.some((p) => p.startsWith('WEBAUTHN_RP_ID:')), 'RP id required')
  t.ok(missing.some((p) => p.startsWith('WEBAUTHN_ORIGINS:')), 'origins required')
  t.same(problems({ NODE_ENV: 'production', JWT_SECRET_KEY: secret, WEBAUTHN_RP_ID: 'example.com', WEBAUTHN_ORIGINS: 'https://example.com, https://app.example.com/' }), [])
  t.match(problems({ WEBAUTHN_RP_ID: 'example.com', WEBAUTHN_ORIGINS: 'https://example.org' }), [/not on WEBAUTHN_RP_ID/])
  t.match(problems({ WEBAUTHN_RP_ID: 'example.com', WEBAUTHN_ORIGINS: 'https://example.com/login' }), [/not an http\(s\) origin/])
  t.match(problems({ NODE_ENV: 'production', JWT_SECRET_KEY: secret, WEBAUTHN_RP_ID: 'example.com', WEBAUTHN_ORIGINS: 'http://example.com' }), [/must be https/])
})
