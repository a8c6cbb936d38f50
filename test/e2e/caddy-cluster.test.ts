import { Readable } from 'node:stream'
import t from 'tap'
import { request } from 'undici'
import { createUser, defaultPassword } from '../helpers/users.ts'
import { answeredBy, e2eSkipReason, prefix, startCluster } from '../helpers/cluster.ts'

// Several real processes start here; on a busy machine that takes a while. Bounded all the same.
t.setTimeout(420_000)

const RATE_LIMIT_MAX = 20
const MAX_BODY_BYTES = 2_000_000

t.test('Caddy in front of two API processes on PostgreSQL and Redis', { skip: e2eSkipReason() }, async (t) => {
  // The global limit counted exactly in Redis (RATE_LIMIT_SYNC_MS=0): what this file shows is that
  // the instances share one bucket keyed on the real client; the batched default's overshoot
  // across two instances is measured in test/foundation/rate-limit-batched.test.ts.
  const { ctx, a, b, caddy, clients } = await startCluster(t, { env: { RATE_LIMIT_MAX: String(RATE_LIMIT_MAX), RATE_LIMIT_SYNC_MS: '0' }, caddyEnv: { MAX_BODY_BYTES: String(MAX_BODY_BYTES) } })
  const user = await createUser(ctx.app)
  const viaCaddy = (path: string) => `${caddy.url}${path}`

  let tokens: { access_token: string, session_token: string }

  await t.test('login through Caddy; the answer carries the request id and Caddy\'s header defaults', async (t) => {
    const res = await clients.call(viaCaddy(`${prefix}/auth/login-with-password`), {
      ip: '127.0.1.1',
      method: 'POST',
      json: { identifier: user.email, password: defaultPassword }
    })
    t.equal(res.status, 200, JSON.stringify(res.body))
    tokens = res.body.data
    t.ok(tokens.access_token, 'tokens issued')
    t.match(res.headers['x-request-id'], /^[0-9a-f-]{36}$/, 'Caddy gave the request an id the API kept')
    t.equal(res.body.id, res.headers['x-request-id'], 'the envelope id is that request id')
    t.equal(res.headers.server, undefined, 'no Server header')
    t.equal(res.headers['x-content-type-options'], 'nosniff')
    t.equal(res.headers['x-frame-options'], 'DENY')

    const own = await clients.call(viaCaddy(`${prefix}/health`), { ip: '127.0.1.1', headers: { 'x-request-id': 'client-trace-0001' } })
    t.equal(own.headers['x-request-id'], 'client-trace-0001', 'a well-formed incoming request id is kept end to end')
    const forged = await clients.call(viaCaddy(`${prefix}/health`), { ip: '127.0.1.1', headers: { 'x-request-id': 'x"}<script>' } })
    t.not(forged.headers['x-request-id'], 'x"}<script>', 'a malformed one is replaced')
  })

  await t.test('requests are spread over both instances (round robin)', async (t) => {
    const seen = new Set<string>()
    for (let i = 0; i < 8; i++) {
      const res = await clients.call(viaCaddy(`${prefix}/health`), { ip: '127.0.1.2' })
      t.equal(res.status, 200)
      seen.add(answeredBy(res) ?? '?')
    }
    t.same([...seen].sort(), ['instance-a', 'instance-b'], 'both instances answered')
  })

  await t.test('SR-20: logout through Caddy revokes the session on both instances at once', async (t) => {
    const profile = (server: { url: string }, token: string) => clients.call(`${server.url}${prefix}/settings/profile`, { headers: { authorization: `Bearer ${token}` } })
    // Each instance has seen the session (and the shared cache holds its state) before the logout.
    for (const server of [a, b]) {
      t.equal((await profile(server, tokens.access_token)).status, 200, `${server.label} accepts the token`)
      t.equal((await profile(server, tokens.session_token)).status, 200, `${server.label} accepts the session token`)
    }
    const logout = await clients.call(viaCaddy(`${prefix}/auth/logout`), { ip: '127.0.1.1', method: 'POST', headers: { authorization: `Bearer ${tokens.access_token}` } })
    t.equal(logout.status, 200)
    for (const server of [a, b]) {
      for (const token of [tokens.access_token, tokens.session_token]) {
        const res = await profile(server, token)
        t.equal(res.status, 401, `${server.label} refuses the revoked token on the very next request`)
        t.equal(res.body.error.code, 'AUTH_SESSION_REVOKED')
      }
    }
  })

  await t.test('SR-10: the global limit is shared by the instances and keyed on the real client', async (t) => {
    const client = '127.0.1.3'
    const answered = new Set<string>()
    let allowed = 0
    let limited
    for (let i = 0; i < RATE_LIMIT_MAX * 2 + 1; i++) {
      const res = await clients.call(viaCaddy(`${prefix}/health`), { ip: client })
      if (res.status !== 200) { limited = res; break }
      allowed++
      answered.add(answeredBy(res)!)
    }
    t.same([...answered].sort(), ['instance-a', 'instance-b'], 'both instances counted requests')
    t.equal(allowed, RATE_LIMIT_MAX, `429 comes after exactly RATE_LIMIT_MAX (${RATE_LIMIT_MAX}) requests, not after twice as many`)
    t.equal(limited?.status, 429)
    t.equal(limited?.body.error.code, 'RATE_LIMITED', 'in the error envelope')
    t.ok(Number(limited?.headers['retry-after']) >= 1, 'with Retry-After')

    const spoofed = await clients.call(viaCaddy(`${prefix}/health`), { ip: client, headers: { 'x-forwarded-for': '198.51.100.7' } })
    t.equal(spoofed.status, 429, 'an X-Forwarded-For sent by the client does not give it a fresh bucket (Caddy replaces it)')
    const other = await clients.call(viaCaddy(`${prefix}/health`), { ip: '127.0.1.4' })
    t.equal(other.status, 200, 'another client behind the same Caddy has its own bucket: the API sees client addresses, not Caddy\'s')
  })

  await t.test('Caddy\'s access log is JSON and holds no credential', async (t) => {
    const session = await clients.call(viaCaddy(`${prefix}/settings/profile`), { ip: '127.0.1.5', headers: { 'x-session-token': 'secret-session-token-value', authorization: 'Bearer secret-bearer-value' } })
    t.equal(session.status, 401)
    const entry = await caddy.waitForLog((l) => (l.request as { uri?: string } | undefined)?.uri === `${prefix}/settings/profile` && (l.request as { remote_ip?: string }).remote_ip === '127.0.1.5')
    t.equal(entry.status, 401, 'one JSON object per request, with its status')
    const text = JSON.stringify(entry)
    t.notMatch(text, /secret-session-token-value/, 'X-Session-Token is dropped')
    t.notMatch(text, /secret-bearer-value/, 'Authorization is redacted')
  })

  await t.test('a body declared over MAX_BODY_BYTES is refused by Caddy, with the error envelope, before any instance', async (t) => {
    const id = 'oversized-body-0001'
    const big = await clients.call(viaCaddy(`${prefix}/auth/login-with-password`), {
      ip: '127.0.1.6',
      method: 'POST',
      headers: { 'x-request-id': id },
      json: { identifier: 'x'.repeat(MAX_BODY_BYTES), password: 'y' }
    })
    t.equal(big.status, 413)
    t.equal(big.body.success, false)
    t.equal(big.body.error.code, 'PAYLOAD_TOO_LARGE')
    t.equal(big.body.error.id, id, 'the envelope carries the request id')
    t.ok(!Number.isNaN(Date.parse(big.body.error.timestamp)), 'and an ISO-8601 timestamp')
    t.notOk([...a.logs, ...b.logs].some((l) => l.reqId === id), 'no instance saw the request')
  })

  await t.test('a streamed oversized body gets the API\'s 413 and takes no instance out of rotation', async (t) => {
    async function * chunks () {
      for (let i = 0; i < 3; i++) yield Buffer.alloc(MAX_BODY_BYTES / 2, 0x61)
    }
    const res = await request(viaCaddy(`${prefix}/auth/login-with-password`), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: Readable.from(chunks())
    })
    const body = await res.body.json() as { error: { code: string } }
    t.equal(res.statusCode, 413)
    t.equal(body.error.code, 'PAYLOAD_TOO_LARGE', 'the API\'s own body limit answered')
    const answered = new Set<string>()
    for (let i = 0; i < 4; i++) answered.add(answeredBy(await clients.call(viaCaddy(`${prefix}/health`), { ip: '127.0.1.7' }))!)
    t.same([...answered].sort(), ['instance-a', 'instance-b'], 'both instances still receive traffic')
  })
})
