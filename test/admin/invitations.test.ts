import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { build, fakeClock, readOutbox, strongPassword } from '../helpers/otp.ts'
import { login } from '../helpers/users.ts'
import { actor, audits, call, fastEnv, userRow } from './helpers.ts'

/** Invitations (issue 19): an account created without a password, its single-use code, resend, expiry. */
const clock = fakeClock(Date.parse('2030-01-01T00:00:00Z'))
const app = await build(t, { ...fastEnv, INVITE_TTL_HOURS: '2' }, { now: clock.now })
const admin = await actor(app, { groups: ['admin'] })

/** The invitation code of the latest invitation sent to an address (the outbox is the dev transport). */
function invitationCode (app: FastifyInstance, to: string): string {
  const message = readOutbox(app).filter((m) => m.to === to && m.template === 'invitation').pop()
  const code = message?.text.match(/[A-Za-z0-9_-]{43}/)?.[0]
  if (!code) throw new Error(`no invitation in the outbox for ${to}`)
  return code
}

const accept = (code: string, password = strongPassword) =>
  app.inject({ method: 'POST', url: '/api/v1/auth/accept-invitation', payload: { code, password } })

async function invite (payload: Record<string, unknown>, who = admin) {
  const res = await call(app, 'POST', '/users', who, payload)
  if (res.statusCode !== 201) throw new Error(`create: ${res.statusCode} ${res.body}`)
  return res.json().data as { user: { user_id: string, has_password: boolean }, invitation: { channel: string, destination: string, expires_in: number } }
}

t.test('an invitation sets the password once and verifies the address', async (t) => {
  const created = await invite({ email: 'invitee@example.test', first_name: 'Ivy' })
  t.equal(created.user.has_password, false)
  t.same(created.invitation, { channel: 'email', destination: created.invitation.destination, expires_in: 2 * 3600 })
  t.not(created.invitation.destination, 'invitee@example.test', 'the address is masked')
  const code = invitationCode(app, 'invitee@example.test')
  t.notOk(JSON.stringify(created).includes(code), 'the code is not in the answer')
  const [sent] = (await audits(app, 'invitation_sent')).filter((r) => r.target_user_id === created.user.user_id)
  t.equal(sent.user_id, admin.id)
  t.notOk(JSON.stringify(sent).includes(code), 'nor in the audit row')

  const weak = await accept(code, 'short')
  t.equal(weak.statusCode, 400)
  t.not(weak.json().error.code, 'INVITATION_INVALID', 'a refused password does not use up the code')
  t.equal((await accept('x'.repeat(43))).json().error.code, 'INVITATION_INVALID', 'an unknown code')

  const ok = await accept(code)
  t.equal(ok.statusCode, 200, ok.body)
  t.equal(ok.json().data.has_password, true)
  t.equal(ok.json().data.is_email_verified, true)
  t.notOk('access_token' in ok.json().data, 'no tokens')
  await login(app, 'invitee@example.test', strongPassword)

  const again = await accept(code, 'another sturdy passphrase 9')
  t.equal(again.statusCode, 400)
  t.equal(again.json().error.code, 'INVITATION_INVALID', 'single use')
  await login(app, 'invitee@example.test', strongPassword)
  t.equal((await audits(app, 'invitation_accepted')).filter((r) => r.target_user_id === created.user.user_id).length, 1)

  const resend = await call(app, 'POST', `/users/${created.user.user_id}/invitation`, admin, {})
  t.equal(resend.statusCode, 409, 'an account with a password gets no new invitation')
})

t.test('a resent invitation replaces the previous one', async (t) => {
  const created = await invite({ email: 'twice@example.test' })
  const first = invitationCode(app, 'twice@example.test')
  clock.advance(61_000)
  const resend = await call(app, 'POST', `/users/${created.user.user_id}/invitation`, admin)
  t.equal(resend.statusCode, 200, resend.body)
  const second = invitationCode(app, 'twice@example.test')
  t.not(second, first)
  t.equal((await accept(first)).json().error.code, 'INVITATION_INVALID', 'the first code no longer works')
  t.equal((await accept(second)).statusCode, 200)
})

t.test('an invitation by SMS verifies the phone number', async (t) => {
  const created = await invite({ phone_number: '+14155550142' })
  t.equal(created.invitation.channel, 'sms')
  const ok = await accept(invitationCode(app, '+14155550142'))
  t.equal(ok.statusCode, 200, ok.body)
  t.equal(ok.json().data.is_phone_verified, true)
  t.equal(ok.json().data.is_email_verified, false)
})

t.test('an invitation expires after INVITE_TTL_HOURS', async (t) => {
  const created = await invite({ email: 'late@example.test' })
  const code = invitationCode(app, 'late@example.test')
  clock.advance(2 * 3600 * 1000 + 1000)
  const late = await accept(code)
  t.equal(late.statusCode, 400)
  t.equal(late.json().error.code, 'INVITATION_INVALID')
  const row = await userRow(app, created.user.user_id)
  t.equal(row.password, null, 'no password was set')
  t.equal(row.is_email_verified, false)
})

t.test('a deleted account\'s invitation no longer works', async (t) => {
  const superAdmin = await actor(app, { groups: ['super_admin'] })
  const created = await invite({ email: 'gone@example.test' }, superAdmin)
  const code = invitationCode(app, 'gone@example.test')
  t.equal((await call(app, 'DELETE', `/users/${created.user.user_id}`, superAdmin)).statusCode, 200)
  t.equal((await accept(code)).json().error.code, 'INVITATION_INVALID')
})
