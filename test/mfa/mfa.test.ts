import t from 'tap'
import { eq } from 'drizzle-orm'
import { generate } from 'otplib'
import type { FastifyInstance } from 'fastify'
import { build } from '../helpers/build.ts'
import { lastCode, readOutbox } from '../helpers/otp.ts'
import { bearer, createUser, defaultPassword, login } from '../helpers/users.ts'
import { group, mfaFactor, mfaRecoveryCode } from '../../db/schema/index.ts'

const api = '/api/v1'
const loginUrl = `${api}/auth/login-with-password`

// A clock the tests move: TOTP codes are computed for it, and a new step is a new code.
let clock = Date.now()
const now = () => clock
const nextStep = () => { clock += 30_000 }
const codeAt = (secret: string, at = clock) => generate({ secret, epoch: Math.floor(at / 1000) })

let shared: FastifyInstance | undefined
const app0 = async () => (shared ??= await build(t, { AUTH_RATE_LIMIT_PER_IDENTIFIER: '100', AUTH_RATE_LIMIT_PER_IP: '1000' }, { now }))

const claims = (jwt: string) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString()) as { amr?: string[], aal?: number }

/** Enrols a TOTP factor for a fresh user; answers the secret, the recovery codes and the enrolling session's access token. */
async function enrolled (app: FastifyInstance, spec: { groups?: string[] } = {}) {
  const u = await createUser(app, spec)
  const tokens = await login(app, u.email!)
  const start = await app.inject({ method: 'POST', url: `${api}/auth/mfa/totp`, headers: bearer(tokens.access_token) })
  if (start.statusCode !== 200) throw new Error(`enrolment failed: ${start.body}`)
  const { factor_id: factorId, secret } = start.json().data
  const verify = await app.inject({ method: 'POST', url: `${api}/auth/mfa/totp/verify`, headers: bearer(tokens.access_token), payload: { factor_id: factorId, code: await codeAt(secret) } })
  if (verify.statusCode !== 200) throw new Error(`confirmation failed: ${verify.body}`)
  return { u, secret: secret as string, factorId: factorId as string, recoveryCodes: verify.json().data.recovery_codes as string[], access: tokens.access_token }
}

const passwordStep = async (app: FastifyInstance, email: string) => {
  const res = await app.inject({ method: 'POST', url: loginUrl, payload: { identifier: email, password: defaultPassword } })
  return res
}
const challenge = (app: FastifyInstance, ticket: string, code: string) =>
  app.inject({ method: 'POST', url: `${api}/auth/mfa/challenge`, payload: { mfa_ticket: ticket, code } })

t.test('enrolment: secret, otpauth URI and QR code; a first code confirms it; the secret is stored encrypted and never shown again', async (t) => {
  const app = await app0()
  const u = await createUser(app)
  const tokens = await login(app, u.email!)
  const start = await app.inject({ method: 'POST', url: `${api}/auth/mfa/totp`, headers: bearer(tokens.access_token) })
  t.equal(start.statusCode, 200)
  const data = start.json().data
  t.match(data.otpauth_uri, /^otpauth:\/\/totp\//)
  t.match(data.qr_code, /^data:image\/png;base64,/)
  const [row] = await app.db.select().from(mfaFactor).where(eq(mfaFactor.factor_id, data.factor_id))
  t.equal(row.status, 'pending')
  t.notOk(row.secret.includes(data.secret), 'the secret is not stored in clear')
  const current = await codeAt(data.secret)
  const wrong = await app.inject({ method: 'POST', url: `${api}/auth/mfa/totp/verify`, headers: bearer(tokens.access_token), payload: { factor_id: data.factor_id, code: current === '000000' ? '111111' : '000000' } })
  t.equal(wrong.json().error.code, 'MFA_INVALID_CODE')
  const ok = await app.inject({ method: 'POST', url: `${api}/auth/mfa/totp/verify`, headers: bearer(tokens.access_token), payload: { factor_id: data.factor_id, code: await codeAt(data.secret) } })
  t.equal(ok.statusCode, 200)
  t.equal(ok.json().data.recovery_codes.length, 10)
  t.equal(ok.json().data.factor.status, 'verified')
  const codes = await app.db.select().from(mfaRecoveryCode).where(eq(mfaRecoveryCode.user_id, u.user_id))
  t.equal(codes.length, 10)
  t.notOk(codes.some((c) => ok.json().data.recovery_codes.includes(c.code_hash)), 'recovery codes are stored hashed')
  const list = await app.inject({ method: 'GET', url: `${api}/auth/mfa`, headers: bearer(tokens.access_token) })
  t.equal(list.json().data.factors.length, 1)
  t.equal(list.json().data.recovery_codes_remaining, 10)
  t.notOk(list.body.includes(data.secret), 'the secret is never returned again')
  const again = await app.inject({ method: 'POST', url: `${api}/auth/mfa/totp`, headers: bearer(tokens.access_token) })
  t.equal(again.json().error.code, 'MFA_ALREADY_ENROLLED')
})

t.test('login of an enrolled account gives no token without the second step; the challenge answers aal2 tokens; a replayed code is refused', async (t) => {
  const app = await app0()
  const { u, secret } = await enrolled(app)
  nextStep()
  const first = await passwordStep(app, u.email!)
  t.equal(first.statusCode, 200)
  const body = first.json().data
  t.equal(body.mfa_required, true)
  t.notOk(body.access_token ?? body.session_token ?? body.refresh_token, 'no token before the second factor')
  const code = await codeAt(secret)
  const res = await challenge(app, body.mfa_ticket, code)
  t.equal(res.statusCode, 200, res.body)
  const tokens = res.json().data
  t.same(claims(tokens.access_token).amr, ['pwd', 'totp'])
  t.equal(claims(tokens.access_token).aal, 2)
  t.equal(claims(tokens.session_token).aal, 2)
  const used = await challenge(app, body.mfa_ticket, code)
  t.equal(used.json().error.code, 'MFA_TICKET_INVALID', 'a ticket works once')
  const second = (await passwordStep(app, u.email!)).json().data
  const replay = await challenge(app, second.mfa_ticket, code)
  t.equal(replay.statusCode, 400)
  t.equal(replay.json().error.code, 'MFA_INVALID_CODE', 'the same code in the same step is refused')
  nextStep()
  const fresh = await challenge(app, second.mfa_ticket, await codeAt(secret))
  t.equal(fresh.statusCode, 200, 'the next step\'s code works with the same ticket')
  // A refresh keeps the session's assurance.
  const refreshed = await app.inject({ method: 'POST', url: `${api}/auth/refresh-token`, payload: { refresh_token: fresh.json().data.refresh_token } })
  t.equal(claims(refreshed.json().data.access_token).aal, 2)
})

t.test('a code of the previous or next step is accepted (±1 step drift), two steps off is not', async (t) => {
  const app = await app0()
  const { u, secret } = await enrolled(app)
  nextStep(); nextStep(); nextStep()
  const ticket = (await passwordStep(app, u.email!)).json().data.mfa_ticket
  t.equal((await challenge(app, ticket, await codeAt(secret, clock - 60_000))).statusCode, 400, 'two steps old')
  t.equal((await challenge(app, ticket, await codeAt(secret, clock + 30_000))).statusCode, 200, 'one step ahead')
})

t.test('a recovery code works once, and the OAuth2 /token grant answers mfa_required', async (t) => {
  const app = await app0()
  const { u, recoveryCodes } = await enrolled(app)
  const token = await app.inject({ method: 'POST', url: `${api}/token`, payload: { grant_type: 'password', username: u.email, password: defaultPassword } })
  t.equal(token.statusCode, 403)
  t.equal(token.json().error, 'mfa_required')
  t.notOk(token.json().access_token)
  const ok = await challenge(app, token.json().mfa_ticket, recoveryCodes[0].toUpperCase())
  t.equal(ok.statusCode, 200, 'a recovery code (any case) completes the login')
  t.same(claims(ok.json().data.access_token).amr, ['pwd', 'recovery'])
  const ticket = (await passwordStep(app, u.email!)).json().data.mfa_ticket
  t.equal((await challenge(app, ticket, recoveryCodes[0])).json().error.code, 'MFA_INVALID_CODE', 'the same recovery code is refused')
  t.equal((await challenge(app, ticket, recoveryCodes[1])).statusCode, 200)
  const plain = await createUser(app)
  const noMfa = await app.inject({ method: 'POST', url: `${api}/token`, payload: { grant_type: 'password', username: plain.email, password: defaultPassword } })
  t.equal(noMfa.statusCode, 200, '/token still answers tokens for an account without MFA')
  t.ok(noMfa.json().access_token)
})

t.test('SR-9: five wrong codes lock the account as password failures do', async (t) => {
  const app = await app0()
  const { u, secret } = await enrolled(app)
  nextStep()
  const right = await codeAt(secret)
  const wrong = right === '123456' ? '654321' : '123456'
  let ticket: string = (await passwordStep(app, u.email!)).json().data.mfa_ticket
  for (let i = 1; i <= 5; i++) {
    const res = await challenge(app, ticket, wrong)
    t.equal(res.json().error.code, 'MFA_INVALID_CODE', `wrong code ${i}`)
  }
  const locked = await passwordStep(app, u.email!)
  t.equal(locked.statusCode, 429, 'the password login is locked too')
  t.equal(locked.json().error.code, 'AUTH_ACCOUNT_LOCKED')
  t.ok(Number(locked.headers['retry-after']) > 0)
  const dead = await challenge(app, ticket, right)
  t.equal(dead.json().error.code, 'MFA_TICKET_INVALID', 'the ticket died with its fifth wrong code')
  // The lock is the password lockout's: lifting it (as a password reset does) lets a right code through.
  await app.throttle.clearFailures(`user:${u.user_id}`)
  ticket = (await passwordStep(app, u.email!)).json().data.mfa_ticket
  t.equal((await challenge(app, ticket, right)).statusCode, 200, 'a right code logs in once the lock is lifted')
})

t.test('aal1 tokens cannot change the password of an enrolled account; aal2 tokens can', async (t) => {
  const app = await app0()
  const { u, secret, access } = await enrolled(app)
  const change = (token: string) => app.inject({ method: 'POST', url: `${api}/auth/change-password`, headers: bearer(token), payload: { current_password: defaultPassword, new_password: 'another long passphrase 42' } })
  const refused = await change(access)
  t.equal(refused.statusCode, 403)
  t.equal(refused.json().error.code, 'MFA_STEP_UP_REQUIRED')
  const email = await app.inject({ method: 'POST', url: `${api}/settings/change-email`, headers: bearer(access), payload: { new_email: `moved-${u.user_id.slice(0, 8)}@example.com` } })
  t.equal(email.json().error.code, 'MFA_STEP_UP_REQUIRED', 'an email change needs aal2 too')
  const factors = await app.inject({ method: 'GET', url: `${api}/auth/mfa`, headers: bearer(access) })
  const factorId = factors.json().data.factors[0].factor_id
  const remove = await app.inject({ method: 'DELETE', url: `${api}/auth/mfa/${factorId}`, headers: bearer(access) })
  t.equal(remove.json().error.code, 'MFA_STEP_UP_REQUIRED', 'factor removal needs aal2 too')
  const regenerate = await app.inject({ method: 'POST', url: `${api}/auth/mfa/recovery-codes`, headers: bearer(access) })
  t.equal(regenerate.json().error.code, 'MFA_STEP_UP_REQUIRED', 'so do new recovery codes')
  nextStep()
  const ticket = (await passwordStep(app, u.email!)).json().data.mfa_ticket
  const aal2 = (await challenge(app, ticket, await codeAt(secret))).json().data.access_token
  const codes = await app.inject({ method: 'POST', url: `${api}/auth/mfa/recovery-codes`, headers: bearer(aal2) })
  t.equal(codes.statusCode, 200)
  t.equal(codes.json().data.recovery_codes.length, 10)
  t.equal((await change(aal2)).statusCode, 200)
  const removed = await app.inject({ method: 'DELETE', url: `${api}/auth/mfa/${factorId}`, headers: bearer(aal2) })
  t.equal(removed.statusCode, 200)
  const plain = await app.inject({ method: 'POST', url: loginUrl, payload: { identifier: u.email, password: 'another long passphrase 42' } })
  t.ok(plain.json().data.access_token, 'without a factor the login answers tokens again')
})

t.test('a group with require_mfa forces its members to enrol', async (t) => {
  const app = await app0()
  const admin = await createUser(app, { groups: ['super_admin'] })
  const adminToken = (await login(app, admin.email!)).access_token
  const created = await app.inject({ method: 'POST', url: `${api}/groups`, headers: bearer(adminToken), payload: { codename: 'secure_team', name: 'Secure team' } })
  t.equal(created.statusCode, 201, created.body)
  t.equal(created.json().data.require_mfa, false)
  const groupId = created.json().data.group_id
  const member = await createUser(app, { groups: ['user', 'secure_team'] })
  const token = (await login(app, member.email!)).access_token
  t.equal((await app.inject({ method: 'GET', url: `${api}/settings`, headers: bearer(token) })).statusCode, 200)
  const updated = await app.inject({ method: 'PUT', url: `${api}/groups/${groupId}`, headers: bearer(adminToken), payload: { require_mfa: true } })
  t.equal(updated.json().data.require_mfa, true)
  const refused = await app.inject({ method: 'GET', url: `${api}/settings`, headers: bearer(token) })
  t.equal(refused.statusCode, 403, 'applies on the next request')
  t.equal(refused.json().error.code, 'MFA_ENROLMENT_REQUIRED')
  t.equal((await app.inject({ method: 'GET', url: `${api}/auth/token-info`, headers: bearer(token) })).statusCode, 200, 'token-info stays open')
  const start = await app.inject({ method: 'POST', url: `${api}/auth/mfa/totp`, headers: bearer(token) })
  t.equal(start.statusCode, 200, 'enrolment stays open')
  const { factor_id: factorId, secret } = start.json().data
  await app.inject({ method: 'POST', url: `${api}/auth/mfa/totp/verify`, headers: bearer(token), payload: { factor_id: factorId, code: await codeAt(secret) } })
  t.equal((await app.inject({ method: 'GET', url: `${api}/settings`, headers: bearer(token) })).statusCode, 200, 'enrolled: the account works again')
  const other = await createUser(app)
  const otherToken = (await login(app, other.email!)).access_token
  t.equal((await app.inject({ method: 'GET', url: `${api}/settings`, headers: bearer(otherToken) })).statusCode, 200, 'non-members are not affected')
  const [row] = await app.db.select().from(group).where(eq(group.group_id, groupId))
  t.equal(row.require_mfa, true)
})

t.test('admin reset: manage_users removes a user\'s factors; others get 403', async (t) => {
  const app = await app0()
  const { u } = await enrolled(app)
  const plain = await createUser(app)
  const plainToken = (await login(app, plain.email!)).access_token
  const forbidden = await app.inject({ method: 'DELETE', url: `${api}/users/${u.user_id}/mfa`, headers: bearer(plainToken) })
  t.equal(forbidden.statusCode, 403)
  t.equal(forbidden.json().error.code, 'FORBIDDEN')
  const admin = await createUser(app, { groups: ['super_admin'] })
  const adminToken = (await login(app, admin.email!)).access_token
  const reset = await app.inject({ method: 'DELETE', url: `${api}/users/${u.user_id}/mfa`, headers: bearer(adminToken) })
  t.equal(reset.statusCode, 200, reset.body)
  t.equal(reset.json().data.removed_factors, 1)
  t.equal((await app.db.select().from(mfaRecoveryCode).where(eq(mfaRecoveryCode.user_id, u.user_id))).length, 0)
  const res = await passwordStep(app, u.email!)
  t.ok(res.json().data.access_token, 'the user logs in with the password alone again')
})

t.test('security notices on enrolment, recovery-code use and removal', async (t) => {
  const app = await app0()
  const { u, recoveryCodes } = await enrolled(app)
  const ticket = (await passwordStep(app, u.email!)).json().data.mfa_ticket
  t.equal((await challenge(app, ticket, recoveryCodes[2])).statusCode, 200)
  const admin = await createUser(app, { groups: ['super_admin'] })
  const adminToken = (await login(app, admin.email!)).access_token
  t.equal((await app.inject({ method: 'DELETE', url: `${api}/users/${u.user_id}/mfa`, headers: bearer(adminToken) })).statusCode, 200)
  await app.notify.settled()
  const sent = readOutbox(app).filter((m) => m.to === u.email).map((m) => m.template)
  t.ok(sent.includes('mfa_enabled'), 'enrolment')
  t.ok(sent.includes('mfa_recovery_code_used'), 'recovery code use')
  t.ok(sent.includes('mfa_removed'), 'removal')
  const used = readOutbox(app).find((m) => m.to === u.email && m.template === 'mfa_recovery_code_used')
  t.match(used?.text, /9 unused codes/, 'the notice says how many codes are left')
})

t.test('a one-time-password login of an enrolled account answers the MFA ticket too; amr records otp', async (t) => {
  const app = await app0()
  const { u, secret } = await enrolled(app)
  const sent = await app.inject({ method: 'POST', url: `${api}/auth/send-one-time-password`, payload: { email: u.email, purpose: 'login' } })
  t.equal(sent.statusCode, 200, sent.body)
  const res = await app.inject({ method: 'POST', url: `${api}/auth/login-with-otp`, payload: { email: u.email, otp: lastCode(app, u.email!, 'login') } })
  t.equal(res.statusCode, 200, res.body)
  t.equal(res.json().data.mfa_required, true)
  t.notOk(res.json().data.access_token)
  nextStep()
  const done = await challenge(app, res.json().data.mfa_ticket, await codeAt(secret))
  t.same(claims(done.json().data.access_token).amr, ['otp', 'totp'])
})
