import path from 'node:path'
import { randomUUID } from 'node:crypto'
import { mkdir, writeFile } from 'node:fs/promises'
import fp from 'fastify-plugin'
import type { FastifyBaseLogger } from 'fastify'
import { and, desc, eq, ne, sql } from 'drizzle-orm'
import { session, type User } from '../../../db/schema/index.ts'
import type { AppConfig } from '../../../config.ts'
import { describeDevice } from '../auth/sessions.ts'
import type { Caller } from '../auth/caller.ts'
import { render, type NoticeTemplate, type OtpPurpose, type TemplateName } from './_templates/messages.ts'

/**
 * Outgoing email, SMS and WhatsApp messages.
 *
 * - email: SMTP through nodemailer (EMAIL_HOST, ...);
 * - sms and whatsapp: Twilio (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and a sender
 *   number or messaging service); TWILIO_API_BASE_URL replaces api.twilio.com;
 * - a channel with nothing configured goes to the development outbox outside
 *   production (a log line without the message, and one JSON file per message in
 *   DATA_DIR/outbox), and fails in production, so a code is never "sent" nowhere.
 *
 * `send` waits for the transport and throws DeliveryError: one-time passwords must
 * reach the client as a 502 when they could not be sent (SR-16). `notice` is for
 * security notices after a change that already happened: it runs in the background
 * and never fails the request. Secrets (the code) are scrubbed from every error
 * text that could reach a log (SR-15).
 */
export type Channel = 'email' | 'sms' | 'whatsapp'
export type TransportName = 'smtp' | 'twilio' | 'outbox' | 'disabled'

export interface OutgoingMessage {
  channel: Channel
  /** An email address or an E.164 number. */
  to: string
  template: TemplateName
  lang: string
  params?: Record<string, string | number>
  purpose?: OtpPurpose
  /** Values that must not appear in any log line or error (the code). */
  secrets?: string[]
}

export interface NoticeInput {
  account: User
  template: NoticeTemplate
  params?: Record<string, string | number>
  /** Where to send it; defaults to the account's verified email, else its verified phone (SMS). */
  to?: { channel: Channel, to: string }
}

export interface Notifier {
  readonly transports: Readonly<Record<Channel, TransportName>>
  /** Renders and delivers one message; throws DeliveryError when it could not be handed over. */
  send: (message: OutgoingMessage) => Promise<void>
  /** A security notice in the background; failures are logged, never thrown. */
  notice: (input: NoticeInput) => void
  /** After a login: a notice when it comes from a device the account has not used before. */
  loginNotice: (caller: Pick<Caller, 'ip' | 'userAgent'>, account: User, sessionId: string) => void
  /** Resolves once every background notice started so far has finished. */
  settled: () => Promise<void>
}

declare module 'fastify' {
  interface FastifyInstance { notify: Notifier }
}

export class DeliveryError extends Error {
  constructor (readonly channel: Channel, readonly transport: TransportName, reason: string) {
    super(`${channel} delivery through ${transport} failed: ${reason}`)
    this.name = 'DeliveryError'
  }
}

interface Delivery {
  channel: Channel
  to: string
  subject: string
  text: string
  html: string
  /** The text of an SMS or WhatsApp message. */
  short: string
  template: TemplateName
  purpose?: OtpPurpose
}

interface Transport {
  readonly name: TransportName
  deliver: (delivery: Delivery) => Promise<void>
  close?: () => void
}

function scrub (text: string, secrets: readonly string[]): string {
  let out = text
  for (const secret of secrets) if (secret) out = out.split(secret).join('[redacted]')
  return out.slice(0, 500)
}

function describeFailure (error: unknown): string {
  const e = error as { message?: string, code?: string | number, status?: number, responseCode?: number } | null
  const parts = [e?.status, e?.responseCode, e?.code].filter((p) => p !== undefined && p !== null && p !== '')
  return `${parts.length > 0 ? `[${parts.join(' ')}] ` : ''}${e?.message ?? String(error)}`
}

async function smtpTransport (config: AppConfig): Promise<Transport> {
  const { default: nodemailer } = await import('nodemailer')
  const user = config.EMAIL_HOST_USER
  const timeout = config.NOTIFY_TIMEOUT_MS
  const transporter = nodemailer.createTransport({
    host: config.EMAIL_HOST,
    port: config.EMAIL_PORT,
    secure: config.EMAIL_SECURE,
    ...(user ? { auth: { user, pass: config.EMAIL_HOST_PASSWORD ?? '' } } : {}),
    pool: true,
    maxConnections: 5,
    connectionTimeout: timeout,
    greetingTimeout: timeout,
    socketTimeout: timeout
  })
  const address = config.EMAIL_FROM ?? (user?.includes('@') ? user : `no-reply@${config.EMAIL_HOST}`)
  const from = { name: config.APP_NAME, address }
  return {
    name: 'smtp',
    async deliver (d) {
      await transporter.sendMail({ from, to: d.to, subject: d.subject, text: d.text, html: d.html })
    },
    close: () => transporter.close()
  }
}

interface TwilioSender { send: (to: string, body: string) => Promise<void> }

async function twilioSenders (config: AppConfig): Promise<{ sms?: TwilioSender, whatsapp?: TwilioSender }> {
  const sid = config.TWILIO_ACCOUNT_SID
  if (!sid) return {}
  if (!config.TWILIO_AUTH_TOKEN) throw new Error('TWILIO_AUTH_TOKEN is required with TWILIO_ACCOUNT_SID')
  const { default: twilio } = await import('twilio')
  const base = config.TWILIO_API_BASE_URL?.replace(/\/+$/, '')
  // The SDK has no base-URL option; a request client of our own rewrites the origin of every call.
  class RebasedClient extends twilio.RequestClient {
    override request<T> (opts: Parameters<InstanceType<typeof twilio.RequestClient>['request']>[0] & { data?: T }) {
      const original = new URL(opts.uri)
      return super.request<T>({ ...opts, uri: `${base}${original.pathname}${original.search}` })
    }
  }
  const clientOptions = { timeout: config.NOTIFY_TIMEOUT_MS, autoRetry: false }
  const client = twilio(sid, config.TWILIO_AUTH_TOKEN, {
    httpClient: base ? new RebasedClient(clientOptions) : new twilio.RequestClient(clientOptions)
  })
  const service = config.TWILIO_MESSAGING_SERVICE_ID
  const senders: { sms?: TwilioSender, whatsapp?: TwilioSender } = {}
  if (config.TWILIO_PHONE_NUMBER || service) {
    senders.sms = {
      async send (to, body) {
        await client.messages.create({ to, body, ...(service ? { messagingServiceSid: service } : { from: config.TWILIO_PHONE_NUMBER }) })
      }
    }
  }
  const whatsappFrom = config.TWILIO_WHATSAPP_NUMBER
  if (whatsappFrom || service) {
    senders.whatsapp = {
      async send (to, body) {
        await client.messages.create({
          to: `whatsapp:${to}`,
          body,
          ...(whatsappFrom ? { from: `whatsapp:${whatsappFrom.replace(/^whatsapp:/, '')}` } : { messagingServiceSid: service })
        })
      }
    }
  }
  return senders
}

function outboxTransport (dataDir: string, log: FastifyBaseLogger, now: () => number): Transport {
  const dir = path.join(dataDir, 'outbox')
  let sequence = 0
  return {
    name: 'outbox',
    async deliver (d) {
      await mkdir(dir, { recursive: true, mode: 0o700 })
      const createdAt = new Date(now()).toISOString()
      const id = randomUUID()
      sequence++
      const file = path.join(dir, `${createdAt.replace(/[:.]/g, '-')}-${String(sequence).padStart(6, '0')}-${d.channel}.json`)
      const record = {
        id,
        channel: d.channel,
        to: d.to,
        subject: d.subject,
        text: d.channel === 'email' ? d.text : d.short,
        ...(d.channel === 'email' ? { html: d.html } : {}),
        template: d.template,
        ...(d.purpose ? { purpose: d.purpose } : {}),
        created_at: createdAt
      }
      // The file holds the code: readable by the service's user only.
      await writeFile(file, JSON.stringify(record, null, 2) + '\n', { mode: 0o600, flag: 'wx' })
      log.info({ channel: d.channel, to: d.to, template: d.template, file }, 'development outbox: message written (no transport configured)')
    }
  }
}

const disabled = (channel: Channel): Transport => ({
  name: 'disabled',
  async deliver () { throw new Error(`no ${channel} transport is configured`) }
})

export default fp(async (fastify) => {
  const { config, log } = fastify
  const fallback = (channel: Channel) => config.NODE_ENV === 'production' ? disabled(channel) : outboxTransport(config.DATA_DIR, log, () => fastify.now())
  const twilio = await twilioSenders(config)
  const fromTwilio = (channel: 'sms' | 'whatsapp'): Transport => {
    const sender = twilio[channel]
    if (!sender) return fallback(channel)
    return { name: 'twilio', deliver: (d) => sender.send(d.to, d.short) }
  }
  const transports: Record<Channel, Transport> = {
    email: config.EMAIL_HOST ? await smtpTransport(config) : fallback('email'),
    sms: fromTwilio('sms'),
    whatsapp: fromTwilio('whatsapp')
  }
  for (const [channel, transport] of Object.entries(transports)) {
    if (transport.name === 'disabled') log.warn({ channel }, `no ${channel} transport configured: ${channel} messages will fail`)
  }

  const pending = new Set<Promise<void>>()
  const track = (work: Promise<void>) => {
    pending.add(work)
    work.finally(() => pending.delete(work)).catch(() => {})
  }
  // A finishing task may start another (the new-device check sends a notice): wait until none is left.
  const settled = async () => { while (pending.size > 0) await Promise.allSettled([...pending]) }
  fastify.addHook('onClose', async () => {
    await settled()
    for (const transport of new Set(Object.values(transports))) transport.close?.()
  })

  const stamp = () => new Date(fastify.now()).toISOString().slice(0, 16).replace('T', ' ')

  async function send (message: OutgoingMessage) {
    const transport = transports[message.channel]
    const rendered = render({
      template: message.template,
      lang: message.lang,
      purpose: message.purpose,
      params: { app: config.APP_NAME, ...message.params }
    })
    try {
      await transport.deliver({ ...rendered, channel: message.channel, to: message.to, template: message.template, purpose: message.purpose })
    } catch (error) {
      const reason = scrub(describeFailure(error), message.secrets ?? [])
      log.warn({ channel: message.channel, transport: transport.name, template: message.template, reason }, 'message delivery failed')
      throw new DeliveryError(message.channel, transport.name, reason)
    }
  }

  function verifiedChannel (account: User): { channel: Channel, to: string } | undefined {
    if (account.email && account.is_email_verified) return { channel: 'email', to: account.email }
    if (account.phone_number && account.is_phone_verified) return { channel: 'sms', to: account.phone_number }
    return undefined
  }

  function notice ({ account, template, params, to }: NoticeInput) {
    const target = to ?? verifiedChannel(account)
    if (!target) return
    track(send({ ...target, template, lang: account.language, params: { time: stamp(), ...params } })
      .catch(() => { /* logged by send; a notice never fails the change it reports */ }))
  }

  // Prepared once: every login compares its device with the user's last 50 sessions.
  const earlierDevices = fastify.db.select({ device: session.device, user_agent: session.user_agent })
    .from(session)
    .where(and(eq(session.user_id, sql.placeholder('userId')), ne(session.session_id, sql.placeholder('sessionId'))))
    .orderBy(desc(session.created_at))
    .limit(50)
    .prepare('session_earlier_devices')

  function loginNotice (caller: Pick<Caller, 'ip' | 'userAgent'>, account: User, sessionId: string) {
    const { userAgent } = caller
    const ip = caller.ip ?? '-'
    track((async () => {
      const device = describeDevice(userAgent ?? undefined)
      const earlier = await earlierDevices.execute({ userId: account.user_id, sessionId })
      // A first login has nothing to compare with (and follows a sign-up the user just made).
      if (earlier.length === 0) return
      const known = earlier.some((s) => s.user_agent === userAgent || (device !== null && s.device === device))
      if (!known) notice({ account, template: 'new_device', params: { device: device ?? '-', ip } })
    })().catch((err) => log.warn({ err }, 'new-device check failed')))
  }

  fastify.decorate('notify', {
    transports: Object.fromEntries(Object.entries(transports).map(([c, t]) => [c, t.name])) as Record<Channel, TransportName>,
    send,
    notice,
    loginNotice,
    settled
  } satisfies Notifier)
}, { name: 'notify', dependencies: ['db'] })
