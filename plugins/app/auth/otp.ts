import { createHmac, randomBytes, randomInt, timingSafeEqual } from 'node:crypto'
import fp from 'fastify-plugin'
import { AppError } from '../../../schemas/errors.ts'
import { DeliveryError, type Channel } from '../notifications/notify.ts'
import { maskAddress, normalizeEmail, normalizePhone } from '../accounts/contact.ts'
import { otpPurposes, type OtpPurpose } from '../notifications/_templates/messages.ts'
import type { Caller } from './caller.ts'

/**
 * One-time passwords on the shared key-value store (SR-11 to SR-16).
 *
 * - A code is OTP_LENGTH digits from the CSPRNG. Only an HMAC of
 *   purpose + destination (+ the account it is bound to) + code is stored, under a
 *   key that is itself an HMAC, so the store holds no code and no address.
 * - The record carries its own expiry, computed with `fastify.now()`; the store
 *   TTL only makes it disappear. Checking is constant-time; the first correct
 *   check deletes the record (only one concurrent check can delete it: single use).
 * - A new code for the same purpose and destination overwrites the old one. Every
 *   check counts an attempt first (atomic INCR); OTP_MAX_ATTEMPTS wrong ones burn it.
 * - Per destination, whatever the IP: a resend cooldown and a cap per UTC day.
 *   They count even when nothing is sent (unknown account), so they reveal nothing.
 * - A code is stored only after the transport accepted the message: a failed
 *   delivery is a 502 OTP_DELIVERY_FAILED and leaves nothing valid behind.
 * - Every failure of a check is the same OTP_INVALID (wrong, expired, used, burned,
 *   other purpose or destination). Codes never reach a log, an audit row or a response.
 * - The store being down fails every operation (503), never open.
 */
export { otpPurposes, type OtpPurpose }

export interface IssueInput {
  purpose: OtpPurpose
  /** A lower-cased email or an E.164 number. */
  destination: string
  channel: Channel
  /** Language of the message. */
  lang: string
  /** Binds the code to one account: only that account can redeem it. */
  subject?: string
  /**
   * `code` (default); `signup_attempt`: a notice instead of a code (sign-up with a
   * taken address); `nothing`: count the request and answer alike, send nothing.
   */
  send?: 'code' | 'signup_attempt' | 'nothing'
  /** The account concerned, for the audit row. */
  userId?: string | null
}

export interface IssueResult {
  channel: Channel
  destination: string
  expires_in: number
  resend_in: number
}

export interface RedeemInput {
  purpose: OtpPurpose
  destination: string
  otp?: string
  /** A ticket from verify-one-time-password, instead of the code. */
  verification_token?: string
  subject?: string
  userId?: string | null
}

export interface OtpService {
  issue: (caller: Caller, input: IssueInput) => Promise<IssueResult>
  /** Consumes the code (or ticket); throws OTP_INVALID whatever the reason. */
  redeem: (caller: Caller, input: RedeemInput) => Promise<void>
  /** A single-use ticket standing for a checked code (same purpose and destination). */
  issueTicket: (purpose: OtpPurpose, destination: string) => Promise<{ verification_token: string, expires_in: number }>
}

declare module 'fastify' {
  interface FastifyInstance { otp: OtpService }
}

type Outcome = 'ok' | 'unknown' | 'expired' | 'burned' | 'mismatch' | 'used' | 'missing'

interface CodeRecord {
  /** HMAC of binding + code */
  h: string
  /** expiry, ms since epoch (fastify.now clock) */
  e: number
  /** nonce naming this code's attempt counter, so a resend starts a fresh count */
  n: string
}

const DAY_MS = 24 * 60 * 60 * 1000

export interface Destination { kind: 'email' | 'phone', value: string }

/** E.164, or 400 INVALID_PHONE. */
export function requirePhone (raw: string): string {
  const phone = normalizePhone(raw)
  if (!phone) throw new AppError('INVALID_PHONE')
  return phone
}

/** The one address a body names (`email` or `phone_number`), normalised: lower-cased email, E.164 phone. */
export function destinationOf (body: { email?: string, phone_number?: string }): Destination {
  if ((body.email === undefined) === (body.phone_number === undefined)) {
    throw new AppError('VALIDATION_ERROR', { details: [{ field: 'body', message: 'send exactly one of email or phone_number' }] })
  }
  if (body.email !== undefined) return { kind: 'email', value: normalizeEmail(body.email) }
  return { kind: 'phone', value: requirePhone(body.phone_number!) }
}

/** The channel for a destination: email for an email; sms (default) or whatsapp for a phone. */
export function channelFor (destination: Destination, requested?: Channel): Channel {
  if (destination.kind === 'email') {
    if (requested !== undefined && requested !== 'email') throw new AppError('VALIDATION_ERROR', { details: [{ field: 'body/channel', message: 'an email address takes the channel email' }] })
    return 'email'
  }
  if (requested === 'email') throw new AppError('VALIDATION_ERROR', { details: [{ field: 'body/channel', message: 'a phone number takes the channel sms or whatsapp' }] })
  return requested ?? 'sms'
}

/** Bodies that accept a code or a verification ticket carry exactly one of them. */
export function requireProof (body: { otp?: string, verification_token?: string }) {
  if ((body.otp === undefined) === (body.verification_token === undefined)) {
    throw new AppError('VALIDATION_ERROR', { details: [{ field: 'body', message: 'send exactly one of otp or verification_token' }] })
  }
}

export const secondsToNextUtcDay = (now: number) => Math.max(1, Math.ceil((DAY_MS - (now % DAY_MS)) / 1000))

export default fp(async (fastify) => {
  const { config, store, notify } = fastify
  // A key of its own, derived from the server secret, so OTP hashes and JWTs never share one.
  const otpKey = createHmac('sha256', config.JWT_SECRET_KEY!).update('one-time-password.v1').digest()
  const ttlMs = config.OTP_TTL_SECONDS * 1000
  const cooldownMs = config.OTP_RESEND_COOLDOWN_SECONDS * 1000
  const minutes = Math.max(1, Math.round(config.OTP_TTL_SECONDS / 60))

  const keyed = (value: string) => createHmac('sha256', otpKey).update(value).digest('base64url').slice(0, 32)
  const bindingOf = (purpose: OtpPurpose, destination: string, subject?: string) => `${purpose}\n${destination}\n${subject ?? ''}`
  const macOf = (binding: string, code: string) => createHmac('sha256', otpKey).update(`${binding}\n${code}`).digest()
  const codeKey = (binding: string) => `otp:c:${keyed(`code\n${binding}`)}`
  const generate = () => String(randomInt(0, 10 ** config.OTP_LENGTH)).padStart(config.OTP_LENGTH, '0')

  /** Cooldown and daily cap of one destination; returns how to give the cooldown back. */
  async function reserve (destination: string) {
    const now = fastify.now()
    const id = keyed(`destination\n${destination}`)
    const dayKey = `otp:day:${id}:${new Date(now).toISOString().slice(0, 10)}`
    const sentToday = Number(await store.get(dayKey) ?? 0)
    if (sentToday >= config.OTP_DAILY_LIMIT) throw new AppError('OTP_DAILY_LIMIT', { retryAfter: secondsToNextUtcDay(now) })
    const cooldownKey = `otp:cd:${id}`
    if (cooldownMs > 0) {
      const until = now + cooldownMs
      if (!(await store.setNx(cooldownKey, String(until), cooldownMs))) {
        // The value, not the TTL, decides: it follows fastify.now() (a fake clock in tests).
        const current = Number(await store.get(cooldownKey))
        if (current > now) throw new AppError('OTP_COOLDOWN', { retryAfter: (current - now) / 1000 })
        await store.set(cooldownKey, String(until), cooldownMs)
      }
    }
    await store.incr(dayKey, DAY_MS + 2 * 60 * 60 * 1000)
    return { release: () => store.del(cooldownKey) }
  }

  async function issue (caller: Caller, input: IssueInput): Promise<IssueResult> {
    const result: IssueResult = {
      channel: input.channel,
      destination: maskAddress(input.destination),
      expires_in: config.OTP_TTL_SECONDS,
      resend_in: config.OTP_RESEND_COOLDOWN_SECONDS
    }
    const metadata = { purpose: input.purpose, channel: input.channel, destination: result.destination }
    const slot = await reserve(input.destination)
    const mode = input.send ?? 'code'
    const audit = (action: string, extra: Record<string, unknown> = {}, level: 'info' | 'warning' = 'info') =>
      fastify.audit(caller, { action, level, userId: caller.actor?.userId ?? null, targetUserId: input.userId ?? null, metadata: { ...metadata, ...extra } })
    try {
      if (mode === 'nothing') {
        await audit('otp_request_ignored', { reason: 'no_account' })
        return result
      }
      if (mode === 'signup_attempt') {
        await notify.send({ channel: input.channel, to: input.destination, template: 'signup_attempt', lang: input.lang })
        await audit('otp_request_ignored', { reason: 'account_exists', notice: 'signup_attempt' })
        return result
      }
      const code = generate()
      const binding = bindingOf(input.purpose, input.destination, input.subject)
      await notify.send({ channel: input.channel, to: input.destination, template: 'otp', purpose: input.purpose, lang: input.lang, params: { code, minutes }, secrets: [code] })
      const record: CodeRecord = { h: macOf(binding, code).toString('base64url'), e: fastify.now() + ttlMs, n: randomBytes(12).toString('base64url') }
      await store.set(codeKey(binding), JSON.stringify(record), ttlMs)
      await audit('otp_sent')
      return result
    } catch (error) {
      if (!(error instanceof DeliveryError)) throw error
      // A failed delivery should not make the user wait out a cooldown; it still counts towards the daily cap.
      await slot.release().catch(() => {})
      await audit('otp_delivery_failed', { transport: error.transport }, 'warning')
      throw new AppError('OTP_DELIVERY_FAILED', { cause: error })
    }
  }

  async function consumeCode (binding: string, code: string): Promise<Outcome> {
    const key = codeKey(binding)
    const raw = await store.get(key)
    if (!raw) return 'unknown'
    const record = JSON.parse(raw) as CodeRecord
    if (record.e <= fastify.now()) {
      await store.del(key)
      return 'expired'
    }
    const attemptsKey = `otp:a:${record.n}`
    const attempts = await store.incr(attemptsKey, ttlMs)
    if (attempts > config.OTP_MAX_ATTEMPTS) {
      await store.del(key)
      return 'burned'
    }
    const expected = Buffer.from(record.h, 'base64url')
    const actual = macOf(binding, code)
    if (expected.length !== actual.length || !timingSafeEqual(expected, actual)) {
      if (attempts >= config.OTP_MAX_ATTEMPTS) await store.del(key)
      return 'mismatch'
    }
    // Of concurrent correct checks, only the one that deletes the record wins.
    if (await store.del(key) !== 1) return 'used'
    await store.del(attemptsKey)
    return 'ok'
  }

  const ticketKey = (token: string) => `otp:t:${keyed(`ticket\n${token}`)}`

  async function consumeTicket (binding: string, token: string): Promise<Outcome> {
    const key = ticketKey(token)
    const raw = await store.get(key)
    if (!raw) return 'unknown'
    const ticket = JSON.parse(raw) as { b: string, e: number }
    if (ticket.b !== binding) return 'mismatch'
    if (ticket.e <= fastify.now()) {
      await store.del(key)
      return 'expired'
    }
    return await store.del(key) === 1 ? 'ok' : 'used'
  }

  async function redeem (caller: Caller, input: RedeemInput) {
    const binding = bindingOf(input.purpose, input.destination, input.subject)
    const via = input.otp !== undefined ? 'code' : 'verification_token'
    const outcome = input.otp !== undefined
      ? await consumeCode(binding, input.otp)
      : input.verification_token !== undefined ? await consumeTicket(binding, input.verification_token) : 'missing'
    const metadata = { purpose: input.purpose, destination: maskAddress(input.destination), via }
    const actor = caller.actor?.userId ?? null
    if (outcome !== 'ok') {
      await fastify.audit(caller, { action: 'otp_failed', level: 'warning', userId: actor, targetUserId: input.userId ?? null, metadata: { ...metadata, reason: outcome } })
      throw new AppError('OTP_INVALID')
    }
    await fastify.audit(caller, { action: 'otp_verified', userId: actor, targetUserId: input.userId ?? null, metadata })
  }

  async function issueTicket (purpose: OtpPurpose, destination: string) {
    const token = randomBytes(32).toString('base64url')
    await store.set(ticketKey(token), JSON.stringify({ b: bindingOf(purpose, destination), e: fastify.now() + ttlMs }), ttlMs)
    return { verification_token: token, expires_in: config.OTP_TTL_SECONDS }
  }

  fastify.decorate('otp', { issue, redeem, issueTicket } satisfies OtpService)
}, { name: 'otp', dependencies: ['store', 'notify', 'activity'] })
