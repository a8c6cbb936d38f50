import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { randomBytes } from 'node:crypto'

/**
 * A local HTTP endpoint that stands in for api.twilio.com (TWILIO_API_BASE_URL):
 * it receives the Messages API calls the twilio SDK makes, checks their Basic
 * auth, keeps them, and answers like Twilio (201 with a message resource, or a
 * Twilio error body when told to fail).
 */
export interface CapturedTwilioMessage {
  accountSid: string
  to: string
  from?: string
  messagingServiceSid?: string
  body: string
}

export interface TwilioFailure {
  status: number
  code: number
  /** The error message; a function sees the message body (to test that nothing echoed back leaks). */
  message: string | ((body: string) => string)
}

export class TwilioCapture {
  readonly accountSid = `AC${'0123456789abcdef'.repeat(2)}`
  readonly authToken = 'twilio-test-auth-token'
  /** Messages accepted. */
  readonly messages: CapturedTwilioMessage[] = []
  /** Every call, accepted or not. */
  readonly attempts: CapturedTwilioMessage[] = []
  failWith?: TwilioFailure
  port = 0
  private server?: http.Server

  async start () {
    this.server = http.createServer((req, res) => {
      let raw = ''
      req.setEncoding('utf8')
      req.on('data', (chunk: string) => { raw += chunk })
      req.on('end', () => this.handle(req, res, raw))
    })
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', () => resolve()))
    this.port = (this.server.address() as AddressInfo).port
    return this
  }

  private handle (req: http.IncomingMessage, res: http.ServerResponse, raw: string) {
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' })
      res.end(JSON.stringify(body))
    }
    const match = /^\/2010-04-01\/Accounts\/([^/]+)\/Messages\.json$/.exec(req.url ?? '')
    if (req.method !== 'POST' || !match) return send(404, { code: 20404, message: 'The requested resource was not found', status: 404 })
    const expected = `Basic ${Buffer.from(`${this.accountSid}:${this.authToken}`).toString('base64')}`
    if (req.headers.authorization !== expected || match[1] !== this.accountSid) {
      return send(401, { code: 20003, message: 'Authenticate', status: 401 })
    }
    const form = new URLSearchParams(raw)
    const message: CapturedTwilioMessage = {
      accountSid: match[1],
      to: form.get('To') ?? '',
      body: form.get('Body') ?? '',
      ...(form.get('From') ? { from: form.get('From')! } : {}),
      ...(form.get('MessagingServiceSid') ? { messagingServiceSid: form.get('MessagingServiceSid')! } : {})
    }
    this.attempts.push(message)
    if (this.failWith) {
      const { status, code } = this.failWith
      const text = typeof this.failWith.message === 'function' ? this.failWith.message(message.body) : this.failWith.message
      return send(status, { code, message: text, more_info: `https://www.twilio.com/docs/errors/${code}`, status })
    }
    this.messages.push(message)
    send(201, {
      sid: `SM${randomBytes(16).toString('hex')}`,
      account_sid: this.accountSid,
      to: message.to,
      from: message.from ?? null,
      messaging_service_sid: message.messagingServiceSid ?? null,
      body: message.body,
      status: 'queued',
      num_segments: '1',
      direction: 'outbound-api',
      date_created: new Date().toUTCString(),
      uri: `/2010-04-01/Accounts/${this.accountSid}/Messages.json`
    })
  }

  /** Env vars pointing the app at this endpoint. */
  env (extra: Record<string, string> = {}): Record<string, string> {
    return {
      TWILIO_ACCOUNT_SID: this.accountSid,
      TWILIO_AUTH_TOKEN: this.authToken,
      TWILIO_PHONE_NUMBER: '+15005550006',
      TWILIO_WHATSAPP_NUMBER: '+14155238886',
      TWILIO_API_BASE_URL: `http://127.0.0.1:${this.port}`,
      ...extra
    }
  }

  to (number: string) { return this.messages.filter((m) => m.to === number || m.to === `whatsapp:${number}`) }

  async waitFor (predicate: (m: CapturedTwilioMessage) => boolean, what = 'a matching message'): Promise<CapturedTwilioMessage> {
    for (let i = 0; i < 250; i++) {
      const found = this.messages.find(predicate)
      if (found) return found
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    throw new Error(`timed out waiting for ${what}; got: ${this.messages.map((m) => `${m.to}: ${m.body}`).join(' | ')}`)
  }

  async stop () {
    await new Promise<void>((resolve) => this.server ? this.server.close(() => resolve()) : resolve())
  }
}
