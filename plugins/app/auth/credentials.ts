import fp from 'fastify-plugin'
import type { Static } from '@sinclair/typebox'
import type { User } from '../../../db/schema/index.ts'
import { AppError } from '../../../schemas/errors.ts'
import type { ChangeEmailBody, ChangePhoneBody, ForgetPasswordBody, LoginWithOtpBody, SendOtpBody, SignupBody, SignupResultView, VerifyContactBody } from '../../../schemas/otp.ts'
import { isTimeZone } from '../../../schemas/time-zone.ts'
import type { Channel } from '../notifications/notify.ts'
import { maskAddress, normalizeEmail } from '../accounts/contact.ts'
import { channelFor, destinationOf, requirePhone, requireProof, type Destination, type IssueResult, type OtpPurpose } from './otp.ts'
import type { LoginOutcome } from './login.ts'
import { signedIn, type Caller } from './caller.ts'
import { toPublicUser, type PublicUser } from '../accounts/users.ts'

/**
 * The self-service flows built on one-time passwords: sending codes, passwordless
 * login, sign-up, setting / changing / resetting a password, verifying and
 * changing the email or phone number. Routes call these; each flow applies the
 * per-identifier limits (SR-10), audits its outcome (SR-38) and sends the
 * security notices (SR-23). Answers never depend on whether an account exists
 * where that would enumerate accounts (SR-8).
 */
export interface CredentialFlows {
  sendCode: (caller: Caller, body: Static<typeof SendOtpBody>) => Promise<IssueResult>
  verifyCode: (caller: Caller, body: { email?: string, phone_number?: string, purpose: OtpPurpose, otp: string }) => Promise<{ verification_token: string, expires_in: number }>
  /** The session's tokens, or an MFA ticket when the account has a second factor. */
  loginWithOtp: (caller: Caller, body: Static<typeof LoginWithOtpBody>) => Promise<LoginOutcome>
  signUp: (caller: Caller, body: Static<typeof SignupBody>) => Promise<SignupResultView>
  setPassword: (caller: Caller, password: string) => Promise<PublicUser>
  changePassword: (caller: Caller, currentPassword: string, newPassword: string) => Promise<{ revoked_sessions: number }>
  resetPassword: (caller: Caller, body: Static<typeof ForgetPasswordBody>) => Promise<{ revoked_sessions: number }>
  verifyContact: (caller: Caller, body: Static<typeof VerifyContactBody>) => Promise<PublicUser>
  changeEmail: (caller: Caller, body: Static<typeof ChangeEmailBody>) => Promise<{ status: 'otp_sent', otp: IssueResult } | { status: 'changed', user: PublicUser }>
  changePhone: (caller: Caller, body: Static<typeof ChangePhoneBody>) => Promise<{ status: 'otp_sent', otp: IssueResult } | { status: 'changed', user: PublicUser }>
}

declare module 'fastify' {
  interface FastifyInstance { credentials: CredentialFlows }
}

const minute = 60_000
const live = (account: User | undefined) => account !== undefined && account.status !== 'deleted' ? account : undefined

export default fp(async (fastify) => {
  const { config, throttle, users, accounts, passwords, sessions, otp, notify, login } = fastify
  const perIdentifier = (scope: string, value: string) => throttle.limit(scope, value, config.AUTH_RATE_LIMIT_PER_IDENTIFIER, minute)

  async function sendCode (caller: Caller, body: Static<typeof SendOtpBody>) {
    const destination = destinationOf(body)
    const channel = channelFor(destination, body.channel)
    const purpose = body.purpose
    if (purpose === 'verify_email' || purpose === 'verify_phone') return sendVerification(caller, purpose, destination, channel)
    await perIdentifier('otp-send', destination.value)
    const account = live(await users.findByIdentifier(destination.value))
    const base = { purpose, destination: destination.value, channel, userId: account?.user_id ?? null }
    if (purpose === 'signup') {
      // A taken address gets a notice instead of a code; the answer is the same either way.
      return account
        ? otp.issue(caller, { ...base, lang: account.language, send: 'signup_attempt' })
        : otp.issue(caller, { ...base, lang: caller.lang })
    }
    // login, reset_password: an unknown address gets nothing, and the same answer.
    return account
      ? otp.issue(caller, { ...base, lang: account.language })
      : otp.issue(caller, { ...base, lang: caller.lang, send: 'nothing' })
  }

  /** verify_email / verify_phone: for the signed-in caller's own address only. */
  async function sendVerification (caller: Caller, purpose: 'verify_email' | 'verify_phone', destination: Destination, channel: Channel) {
    const auth = signedIn(caller)
    const kind = purpose === 'verify_email' ? 'email' : 'phone'
    if (destination.kind !== kind) throw new AppError('VALIDATION_ERROR', { details: [{ field: 'body', message: `${purpose} takes ${kind === 'email' ? 'email' : 'phone_number'}` }] })
    const account = await users.findById(auth.userId)
    if (!account) throw new AppError('AUTH_SESSION_REVOKED')
    const own = kind === 'email' ? account.email?.toLowerCase() : account.phone_number
    if (own !== destination.value) throw new AppError('VALIDATION_ERROR', { details: [{ field: 'body', message: 'only your own email or phone number can be verified' }] })
    if (kind === 'email' ? account.is_email_verified : account.is_phone_verified) throw new AppError('CONTACT_ALREADY_VERIFIED')
    await perIdentifier('otp-send', destination.value)
    return otp.issue(caller, { purpose, destination: destination.value, channel, lang: account.language, subject: account.user_id, userId: account.user_id })
  }

  async function verifyCode (caller: Caller, body: { email?: string, phone_number?: string, purpose: OtpPurpose, otp: string }) {
    const destination = destinationOf(body)
    await perIdentifier('otp-verify', destination.value)
    await otp.redeem(caller, { purpose: body.purpose, destination: destination.value, otp: body.otp })
    return otp.issueTicket(body.purpose, destination.value)
  }

  /** Receiving a code at an address proves it: mark it verified when it was not. */
  async function provenChannel (account: User, destination: Destination) {
    const verified = destination.kind === 'email' ? account.is_email_verified : account.is_phone_verified
    return verified ? account : accounts.markVerified(account.user_id, destination.kind)
  }

  async function loginWithOtp (caller: Caller, body: Static<typeof LoginWithOtpBody>) {
    const destination = destinationOf(body)
    requireProof(body)
    await perIdentifier('login-id', destination.value)
    const found = live(await users.findByIdentifier(destination.value))
    await otp.redeem(caller, { purpose: 'login', destination: destination.value, otp: body.otp, verification_token: body.verification_token, userId: found?.user_id })
    // A code is only ever sent to an existing account; it may have been deleted since.
    if (!found) throw new AppError('OTP_INVALID')
    return login.complete(caller, found, { method: 'otp', deviceName: body.device_name, metadata: { channel: destination.kind }, beforeSession: () => provenChannel(found, destination) })
  }

  /**
   * The addresses of a sign-up: the one its code proved, and an optional second one
   * (both email and phone_number given; `signup_code_sent_to` says which got the code).
   */
  function signupContacts (body: Static<typeof SignupBody>): { proven: Destination, second?: Destination } {
    const email: Destination | undefined = body.email === undefined ? undefined : { kind: 'email', value: normalizeEmail(body.email) }
    const phone: Destination | undefined = body.phone_number === undefined ? undefined : { kind: 'phone', value: requirePhone(body.phone_number) }
    const named = body.signup_code_sent_to
    const refuse = (message: string) => new AppError('VALIDATION_ERROR', { details: [{ field: 'body/signup_code_sent_to', message }] })
    if (email && phone) {
      if (named === undefined) throw refuse('with both email and phone_number, say which one received the sign-up code')
      return named === 'email' ? { proven: email, second: phone } : { proven: phone, second: email }
    }
    const only = email ?? phone
    if (!only) throw new AppError('VALIDATION_ERROR', { details: [{ field: 'body', message: 'send email, phone_number or both' }] })
    if (named !== undefined && named !== (only.kind === 'email' ? 'email' : 'phone_number')) throw refuse(`no ${named} was given`)
    return { proven: only }
  }

  /** A verification code to a sign-up's second address; undefined when none could go (limits, delivery): the account stands either way. */
  async function sendSecondCode (caller: Caller, account: User, destination: Destination) {
    const purpose = destination.kind === 'email' ? 'verify_email' as const : 'verify_phone' as const
    try {
      await perIdentifier('otp-send', destination.value)
      const sent = await otp.issue(caller, { purpose, destination: destination.value, channel: channelFor(destination), lang: account.language, subject: account.user_id, userId: account.user_id })
      return { purpose, ...sent }
    } catch (err) {
      fastify.log.warn({ err, userId: account.user_id, purpose }, 'sign-up: no verification code for the second address')
      return undefined
    }
  }

  async function signUp (caller: Caller, body: Static<typeof SignupBody>) {
    const { proven, second } = signupContacts(body)
    requireProof(body)
    await perIdentifier('signup-id', proven.value)
    // Everything that can be refused without the code is refused before it is spent.
    if (body.password !== undefined) passwords.check(body.password)
    if (body.timezone !== undefined && !isTimeZone(body.timezone)) {
      throw new AppError('VALIDATION_ERROR', { details: [{ field: 'body/timezone', message: 'not an IANA time zone' }] })
    }
    await otp.redeem(caller, { purpose: 'signup', destination: proven.value, otp: body.otp, verification_token: body.verification_token })
    // Only a caller who proved the address learns whether the user name or the second
    // address is taken (SR-8). The code is spent by then: a ticket for it lets them retry.
    if (body.user_name !== undefined && !(await accounts.availability({ user_name: body.user_name })).user_name) {
      throw new AppError('USER_NAME_TAKEN', { details: await otp.issueTicket('signup', proven.value) })
    }
    if (second) {
      const free = await accounts.availability(second.kind === 'email' ? { email: second.value } : { phone_number: second.value })
      if (!(second.kind === 'email' ? free.email : free.phone_number)) {
        throw new AppError(second.kind === 'email' ? 'EMAIL_TAKEN' : 'PHONE_TAKEN', { details: await otp.issueTicket('signup', proven.value) })
      }
    }
    const address = (d: Destination | undefined, kind: Destination['kind']) => d?.kind === kind ? d.value : undefined
    const account = await accounts.signUp({
      email: address(proven, 'email') ?? address(second, 'email'),
      phone_number: address(proven, 'phone') ?? address(second, 'phone'),
      verified: proven.kind,
      passwordHash: body.password === undefined ? null : await passwords.hash(body.password),
      user_name: body.user_name,
      first_name: body.first_name,
      last_name: body.last_name,
      language: body.language ?? caller.lang,
      timezone: body.timezone,
      country: body.country
    })
    const bundle = await sessions.create(account, { ip: caller.ip, userAgent: caller.userAgent, method: 'otp', deviceName: body.device_name })
    await fastify.audit(caller, {
      action: 'signup',
      userId: account.user_id,
      targetUserId: account.user_id,
      sessionId: bundle.session_id,
      metadata: {
        auth_type: account.auth_type,
        destination: maskAddress(proven.value),
        password_set: account.password !== null,
        ...(second ? { unverified: maskAddress(second.value) } : {})
      }
    })
    const codeSentTo = second ? await sendSecondCode(caller, account, second) : undefined
    return codeSentTo ? { ...bundle, code_sent_to: codeSentTo } : bundle
  }

  async function setPassword (caller: Caller, password: string) {
    const auth = signedIn(caller)
    const account = await users.findById(auth.userId)
    if (!account) throw new AppError('AUTH_SESSION_REVOKED')
    if (account.password) throw new AppError('PASSWORD_ALREADY_SET')
    passwords.check(password)
    // No current password exists to ask for: only a fresh login may set one (SR-23).
    await accounts.assertRecentAuth(caller)
    await fastify.mfa.assertStepUp(caller)
    const updated = await accounts.setPassword(account.user_id, await passwords.hash(password))
    // A pending invitation (an account an administrator created) has nothing left to do.
    await fastify.invitations.cancel(account.user_id)
    await sessions.refreshUserState(account.user_id)
    await fastify.audit(caller, { action: 'password_set', targetUserId: account.user_id })
    notify.notice({ account: updated, template: 'password_set' })
    return toPublicUser(updated)
  }

  async function changePassword (caller: Caller, currentPassword: string, newPassword: string) {
    const auth = signedIn(caller)
    await perIdentifier('password-change', auth.userId)
    const account = await users.findById(auth.userId)
    if (!account) throw new AppError('AUTH_SESSION_REVOKED')
    if (!account.password) throw new AppError('PASSWORD_NOT_SET')
    passwords.check(newPassword)
    // An account with a second factor changes its password from an aal2 session only (issue 19).
    await fastify.mfa.assertStepUp(caller)
    await accounts.verifyCurrentPassword(caller, account, currentPassword)
    const updated = await accounts.setPassword(account.user_id, await passwords.hash(newPassword))
    // SR-6: every other session ends; the one that made the change continues.
    const revoked = await sessions.revokeAllForUser(account.user_id, 'password_change', { except: auth.sessionId })
    await sessions.refreshUserState(account.user_id)
    await fastify.audit(caller, { action: 'password_change', targetUserId: account.user_id, metadata: { revoked_sessions: revoked } })
    notify.notice({ account: updated, template: 'password_changed' })
    return { revoked_sessions: revoked }
  }

  async function resetPassword (caller: Caller, body: Static<typeof ForgetPasswordBody>) {
    const destination = destinationOf(body)
    requireProof(body)
    await perIdentifier('reset-id', destination.value)
    passwords.check(body.new_password)
    const found = live(await users.findByIdentifier(destination.value))
    await otp.redeem(caller, { purpose: 'reset_password', destination: destination.value, otp: body.otp, verification_token: body.verification_token, userId: found?.user_id })
    if (!found) throw new AppError('OTP_INVALID')
    await provenChannel(found, destination)
    const updated = await accounts.setPassword(found.user_id, await passwords.hash(body.new_password))
    // SR-6: a reset ends every session and logs nobody in; the login lockout is lifted.
    const revoked = await sessions.revokeAllForUser(found.user_id, 'password_reset')
    await throttle.clearFailures(`user:${found.user_id}`)
    await sessions.refreshUserState(found.user_id)
    await fastify.audit(caller, { action: 'password_reset', userId: null, targetUserId: found.user_id, metadata: { revoked_sessions: revoked, channel: destination.kind } })
    notify.notice({ account: updated, template: 'password_reset' })
    return { revoked_sessions: revoked }
  }

  async function verifyContact (caller: Caller, body: Static<typeof VerifyContactBody>) {
    const auth = signedIn(caller)
    const destination = destinationOf(body)
    const account = await users.findById(auth.userId)
    if (!account) throw new AppError('AUTH_SESSION_REVOKED')
    const own = destination.kind === 'email' ? account.email?.toLowerCase() : account.phone_number
    const verified = destination.kind === 'email' ? account.is_email_verified : account.is_phone_verified
    if (own === destination.value && verified) throw new AppError('CONTACT_ALREADY_VERIFIED')
    await perIdentifier('otp-verify', destination.value)
    // The code is bound to this account: one sent for another account or address is simply invalid.
    await otp.redeem(caller, {
      purpose: destination.kind === 'email' ? 'verify_email' : 'verify_phone',
      destination: destination.value,
      otp: body.otp,
      subject: account.user_id,
      userId: account.user_id
    })
    const updated = await accounts.markVerified(account.user_id, destination.kind)
    await sessions.refreshUserState(account.user_id)
    await fastify.audit(caller, { action: destination.kind === 'email' ? 'email_verified' : 'phone_verified', targetUserId: account.user_id, metadata: { destination: maskAddress(destination.value) } })
    return toPublicUser(updated)
  }

  async function changeContact (caller: Caller, destination: Destination, input: { otp?: string, current_password?: string, channel?: Channel }) {
    const auth = signedIn(caller)
    const kind = destination.kind
    const purpose = kind === 'email' ? 'change_email' : 'change_phone'
    if (input.otp === undefined) {
      // Step 1: a fresh login or the current password, then a code to the new address (SR-23).
      const account = await accounts.assertRecentAuth(caller, input.current_password)
      await fastify.mfa.assertStepUp(caller)
      const current = kind === 'email' ? account.email?.toLowerCase() : account.phone_number
      if (current === destination.value) throw new AppError('CONTACT_UNCHANGED')
      // Whether the address is taken is an availability answer (SR-8): it costs the
      // per-address limit and the caller's availability budget before it is given.
      await perIdentifier('otp-send', destination.value)
      await throttle.limit('availability', caller.ip ?? '', config.AVAILABILITY_RATE_LIMIT_PER_IP, minute)
      const free = await accounts.availability(kind === 'email' ? { email: destination.value } : { phone_number: destination.value })
      if (!(kind === 'email' ? free.email : free.phone_number)) throw new AppError(kind === 'email' ? 'EMAIL_TAKEN' : 'PHONE_TAKEN')
      const sent = await otp.issue(caller, {
        purpose, destination: destination.value, channel: channelFor(destination, input.channel), lang: account.language, subject: account.user_id, userId: account.user_id
      })
      return { status: 'otp_sent' as const, otp: sent }
    }
    // Step 2: the code, bound to this account and address, commits the change.
    await fastify.mfa.assertStepUp(caller)
    const account = await users.findById(auth.userId)
    if (!account) throw new AppError('AUTH_SESSION_REVOKED')
    await perIdentifier('otp-verify', destination.value)
    await otp.redeem(caller, { purpose, destination: destination.value, otp: input.otp, subject: account.user_id, userId: account.user_id })
    const previous = kind === 'email' ? account.email : account.phone_number
    const updated = kind === 'email'
      ? await accounts.changeEmail(account.user_id, destination.value)
      : await accounts.changePhone(account.user_id, destination.value)
    await sessions.refreshUserState(account.user_id)
    await fastify.audit(caller, {
      action: kind === 'email' ? 'email_change' : 'phone_change',
      module: 'settings',
      targetUserId: account.user_id,
      metadata: { from: previous ? maskAddress(previous) : null, to: maskAddress(destination.value) }
    })
    if (previous) {
      notify.notice({
        account: updated,
        template: kind === 'email' ? 'email_changed' : 'phone_changed',
        params: { address: maskAddress(destination.value) },
        to: { channel: kind === 'email' ? 'email' : 'sms', to: previous }
      })
    }
    return { status: 'changed' as const, user: toPublicUser(updated) }
  }

  fastify.decorate('credentials', {
    sendCode,
    verifyCode,
    loginWithOtp,
    signUp,
    setPassword,
    changePassword,
    resetPassword,
    verifyContact,
    changeEmail: (caller, body) => changeContact(caller, destinationOf({ email: body.new_email }), body),
    changePhone: (caller, body) => changeContact(caller, destinationOf({ phone_number: body.new_phone_number }), body)
  } satisfies CredentialFlows)
}, { name: 'credentials', dependencies: ['accounts', 'otp', 'notify', 'sessions', 'users', 'passwords', 'throttle', 'activity', 'login', 'mfa', 'invitations'] })
