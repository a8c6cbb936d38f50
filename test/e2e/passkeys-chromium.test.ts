import t from 'tap'
import { existsSync } from 'node:fs'
import net from 'node:net'
import type { FastifyInstance } from 'fastify'
import { eq } from 'drizzle-orm'
import { chromium } from 'playwright-core'
import { build } from '../helpers/build.ts'
import { createUser, login } from '../helpers/users.ts'
import { passkey } from '../../db/schema/index.ts'

/**
 * Passkeys in a real browser: Debian's Chromium, headless, driven with
 * playwright-core; its virtual authenticator (CDP `WebAuthn` domain: CTAP2,
 * internal, resident keys, user verification) makes and uses the credential. The
 * page is served by the API itself (a test route), so the ceremonies run on the
 * API's own origin, http://localhost:<port>: a secure context for WebAuthn. The
 * page's script does what a site's does: ask the API for options, call
 * navigator.credentials.create/get, post the result back.
 */
const executablePath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const skip = existsSync(executablePath) ? false : `Chromium is not installed at ${executablePath} (apt-get install -y chromium; .ci/run installs it)`

const page = String.raw`<!doctype html>
<meta charset="utf-8">
<title>Passkeys test page</title>
<script>
const toBytes = (s) => Uint8Array.from(atob(s.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - s.length % 4) % 4)), (c) => c.charCodeAt(0))
const fromBytes = (buffer) => btoa(String.fromCharCode(...new Uint8Array(buffer))).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')
const descriptors = (list) => (list ?? []).map((c) => ({ ...c, id: toBytes(c.id) }))

async function api (path, body, token) {
  const headers = {}
  if (token) headers.authorization = 'Bearer ' + token
  if (body !== undefined) headers['content-type'] = 'application/json'
  const res = await fetch('/api/v1/auth/passkeys/' + path, { method: 'POST', headers, body: body === undefined ? undefined : JSON.stringify(body) })
  return { status: res.status, body: await res.json() }
}

function credentialJSON (credential) {
  const r = credential.response
  const json = { id: credential.id, rawId: fromBytes(credential.rawId), type: credential.type, clientExtensionResults: credential.getClientExtensionResults(), response: { clientDataJSON: fromBytes(r.clientDataJSON) } }
  if (credential.authenticatorAttachment) json.authenticatorAttachment = credential.authenticatorAttachment
  if (r.attestationObject) {
    json.response.attestationObject = fromBytes(r.attestationObject)
    json.response.transports = r.getTransports ? r.getTransports() : []
  } else {
    json.response.authenticatorData = fromBytes(r.authenticatorData)
    json.response.signature = fromBytes(r.signature)
    if (r.userHandle) json.response.userHandle = fromBytes(r.userHandle)
  }
  return json
}

window.registerPasskey = async (token) => {
  const options = await api('register/options', undefined, token)
  if (options.status !== 200) return options
  const o = options.body.data
  const credential = await navigator.credentials.create({ publicKey: { ...o, challenge: toBytes(o.challenge), user: { ...o.user, id: toBytes(o.user.id) }, excludeCredentials: descriptors(o.excludeCredentials) } })
  return api('register/verify', { credential: credentialJSON(credential), name: 'Chromium' }, token)
}

window.signInWithPasskey = async (identifier) => {
  const options = await api('login/options', identifier ? { identifier } : undefined)
  if (options.status !== 200) return options
  const o = options.body.data
  const credential = await navigator.credentials.get({ publicKey: { ...o, challenge: toBytes(o.challenge), allowCredentials: descriptors(o.allowCredentials) } })
  return api('login/verify', { credential: credentialJSON(credential) })
}
</script>
<p>Passkeys test page</p>
`

async function freePort () {
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as net.AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}

const claims = (jwt: string) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString()) as { amr?: string[], aal?: number }
/** The assertion message: the body only when it failed (a success holds tokens). */
const why = (answer: Answer, what: string) => answer.status === 200 ? what : JSON.stringify(answer.body)
interface Answer { status: number, body: { data: Record<string, unknown> & { access_token: string, user: { user_id: string } } } }

t.test('passkeys in Chromium: a virtual authenticator registers a passkey and signs in with it, with an identifier and without', { skip, timeout: 90_000 }, async (t) => {
  const port = await freePort()
  const testPage = async (fastify: FastifyInstance) => {
    fastify.get('/passkey-test.html', { config: { public: true } }, async (_request, reply) => reply.type('text/html; charset=utf-8').send(page))
  }
  const app = await build(t, { WEBAUTHN_RP_ID: 'localhost', WEBAUTHN_ORIGINS: `http://localhost:${port}`, AUTH_RATE_LIMIT_PER_IP: '1000' }, { plugins: [testPage] })
  await app.listen({ port, host: '127.0.0.1' })
  const u = await createUser(app)
  const tokens = await login(app, u.email!)

  // Root in a container needs --no-sandbox; localhost is pinned to the loopback address the API listens on.
  const browser = await chromium.launch({ executablePath, headless: true, timeout: 30_000, args: ['--no-sandbox', '--host-resolver-rules=MAP localhost 127.0.0.1'] })
  t.teardown(() => browser.close())
  // The API's security headers forbid inline scripts (CSP); the test page is ours.
  const context = await browser.newContext({ bypassCSP: true })
  const tab = await context.newPage()
  tab.setDefaultTimeout(20_000)
  const cdp = await context.newCDPSession(tab)
  await cdp.send('WebAuthn.enable')
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: { protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true }
  })
  await tab.goto(`http://localhost:${port}/passkey-test.html`)
  t.equal(await tab.evaluate('window.isSecureContext'), true, 'localhost is a secure context')

  const registered = await tab.evaluate(`window.registerPasskey(${JSON.stringify(tokens.access_token)})`) as Answer
  t.equal(registered.status, 200, why(registered, 'registered through navigator.credentials.create'))
  t.equal(registered.body.data.name, 'Chromium')
  const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId })
  t.equal(credentials.length, 1, 'the authenticator holds the new credential')
  t.equal(credentials[0].isResidentCredential, true, 'a discoverable credential')

  const named = await tab.evaluate(`window.signInWithPasskey(${JSON.stringify(u.email)})`) as Answer
  t.equal(named.status, 200, why(named, 'signed in with the identifier through navigator.credentials.get'))
  t.equal(named.body.data.user.user_id, u.user_id)
  t.same(claims(named.body.data.access_token).amr, ['webauthn'])
  t.equal(claims(named.body.data.access_token).aal, 2)

  const usernameless = await tab.evaluate('window.signInWithPasskey()') as Answer
  t.equal(usernameless.status, 200, why(usernameless, 'signed in without an identifier'))
  t.equal(usernameless.body.data.user.user_id, u.user_id, 'the discoverable credential named its account')
  const after = await cdp.send('WebAuthn.getCredentials', { authenticatorId })
  const [row] = await app.db.select().from(passkey).where(eq(passkey.user_id, u.user_id))
  t.equal(row.counter, after.credentials[0].signCount, 'the API kept the authenticator\'s signature counter')
  t.ok(row.last_used_at)
})
