import type { AddressInfo } from 'node:net'
import { SMTPServer } from 'smtp-server'

/**
 * A real SMTP server on 127.0.0.1 that keeps every message it receives, for
 * tests that check what the API emails. It requires the configured login (so a
 * test proves the credentials are used) and can be told to refuse recipients.
 */
export interface CapturedMail {
  from: string
  to: string[]
  raw: string
  headers: Record<string, string>
  subject: string
  text: string
  html: string
}

export class SmtpCapture {
  readonly messages: CapturedMail[] = []
  readonly user = 'mailer@auth.test'
  readonly password = 'smtp-test-password'
  /** While true, every RCPT TO is refused with a 550. */
  rejectRecipients = false
  port = 0
  private server?: SMTPServer

  async start () {
    this.server = new SMTPServer({
      secure: false,
      disabledCommands: ['STARTTLS'],
      allowInsecureAuth: true,
      authOptional: false,
      logger: false,
      onAuth: (auth, _session, callback) => {
        if (auth.username === this.user && auth.password === this.password) callback(null, { user: auth.username })
        else callback(new Error('Invalid username or password'))
      },
      onRcptTo: (_address, _session, callback) => {
        if (this.rejectRecipients) callback(Object.assign(new Error('Mailbox unavailable'), { responseCode: 550 }))
        else callback()
      },
      onData: (stream, session, callback) => {
        const chunks: Buffer[] = []
        stream.on('data', (chunk: Buffer) => chunks.push(chunk))
        stream.on('end', () => {
          const raw = Buffer.concat(chunks).toString('utf8')
          const parsed = parseMessage(raw)
          this.messages.push({
            from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
            to: session.envelope.rcptTo.map((r) => r.address),
            raw,
            ...parsed
          })
          callback()
        })
      }
    })
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', () => resolve()))
    this.port = ((this.server as unknown as { server: { address: () => AddressInfo } }).server.address()).port
    return this
  }

  /** Env vars pointing the app at this server. */
  env (): Record<string, string> {
    return { EMAIL_HOST: '127.0.0.1', EMAIL_PORT: String(this.port), EMAIL_HOST_USER: this.user, EMAIL_HOST_PASSWORD: this.password, EMAIL_FROM: 'no-reply@auth.test' }
  }

  to (address: string) { return this.messages.filter((m) => m.to.includes(address)) }

  /** Waits (polling, 5 s at most) until a message matches; for notices sent in the background. */
  async waitFor (predicate: (m: CapturedMail) => boolean, what = 'a matching email'): Promise<CapturedMail> {
    for (let i = 0; i < 250; i++) {
      const found = this.messages.find(predicate)
      if (found) return found
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    throw new Error(`timed out waiting for ${what}; got: ${this.messages.map((m) => `${m.to.join(',')}: ${m.subject}`).join(' | ')}`)
  }

  async stop () {
    await new Promise<void>((resolve) => this.server ? this.server.close(() => resolve()) : resolve())
  }
}

/** The code in a message text: the first run of exactly `length` digits standing on its own. */
export const codeIn = (text: string, length = 6) => new RegExp(`(?<![\\d+])(\\d{${length}})(?!\\d)`).exec(text)?.[1]

// A small MIME reader: enough for what nodemailer writes (multipart/alternative,
// quoted-printable or base64 parts, RFC 2047 encoded subjects).
function parseMessage (raw: string): Omit<CapturedMail, 'from' | 'to' | 'raw'> {
  const { headers, body } = splitHead(raw)
  const parts = leafParts(headers, body)
  const text = parts.find((p) => /^text\/plain/i.test(p.headers['content-type'] ?? 'text/plain'))
  const html = parts.find((p) => /^text\/html/i.test(p.headers['content-type'] ?? ''))
  return { headers, subject: decodeWords(headers.subject ?? ''), text: text ? decodeBody(text) : '', html: html ? decodeBody(html) : '' }
}

function splitHead (raw: string) {
  const at = raw.search(/\r?\n\r?\n/)
  const head = at === -1 ? raw : raw.slice(0, at)
  const body = at === -1 ? '' : raw.slice(at).replace(/^\r?\n\r?\n/, '')
  const headers: Record<string, string> = {}
  for (const line of head.replace(/\r?\n[ \t]+/g, ' ').split(/\r?\n/)) {
    const colon = line.indexOf(':')
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim()
  }
  return { headers, body }
}

function leafParts (headers: Record<string, string>, body: string): Array<{ headers: Record<string, string>, body: string }> {
  const boundary = /boundary="?([^";]+)"?/i.exec(headers['content-type'] ?? '')?.[1]
  if (!/^multipart\//i.test(headers['content-type'] ?? '') || !boundary) return [{ headers, body }]
  return body.split(`--${boundary}`).slice(1)
    .filter((chunk) => !chunk.startsWith('--'))
    .flatMap((chunk) => {
      const part = splitHead(chunk.replace(/^\r?\n/, ''))
      return leafParts(part.headers, part.body)
    })
}

function decodeBody (part: { headers: Record<string, string>, body: string }) {
  const encoding = (part.headers['content-transfer-encoding'] ?? '7bit').toLowerCase()
  if (encoding === 'base64') return Buffer.from(part.body.replace(/\s+/g, ''), 'base64').toString('utf8')
  if (encoding === 'quoted-printable') return decodeQuotedPrintable(part.body)
  return part.body
}

function decodeQuotedPrintable (value: string) {
  const soft = value.replace(/=\r?\n/g, '')
  const bytes: number[] = []
  for (let i = 0; i < soft.length; i++) {
    if (soft[i] === '=' && /^[0-9A-F]{2}$/i.test(soft.slice(i + 1, i + 3))) {
      bytes.push(parseInt(soft.slice(i + 1, i + 3), 16))
      i += 2
    } else {
      bytes.push(...Buffer.from(soft[i], 'utf8'))
    }
  }
  return Buffer.from(bytes).toString('utf8')
}

function decodeWords (value: string) {
  return value.replace(/=\?([^?]+)\?([QB])\?([^?]*)\?=\s*/gi, (_whole, _charset: string, kind: string, text: string) =>
    kind.toUpperCase() === 'B'
      ? Buffer.from(text, 'base64').toString('utf8')
      : decodeQuotedPrintable(text.replace(/_/g, ' ')))
}
