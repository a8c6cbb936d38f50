import t, { type Test } from 'tap'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { MockAgent } from 'undici'
import { safeFetch, type ResolvedAddress, type Resolver, type SafeFetchOptions } from '../../plugins/app/media/url-fetch.ts'
import type { AppError } from '../../schemas/errors.ts'

/**
 * The fetcher itself. Hops to "public" hosts are answered by an undici MockAgent
 * with network access disabled, so the redirect and rebinding rules are tested
 * with the loopback escape hatch OFF and without any connection; hops that
 * really connect go to servers on 127.0.0.0/8 with the hatch on.
 */

const base: SafeFetchOptions = { timeoutMs: 5000, maxRedirects: 3, maxBytes: 1024 * 1024 }

function stubResolver (answers: Record<string, string[] | (() => string[])>) {
  const calls: string[] = []
  const resolve: Resolver = async (host) => {
    calls.push(host)
    const answer = answers[host]
    if (answer === undefined) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' })
    return (typeof answer === 'function' ? answer() : answer).map((address) => ({ address, family: address.includes(':') ? 6 : 4 }))
  }
  return { resolve, calls }
}

/** A MockAgent that refuses any real connection; `pinned` records what each hop was pinned to. */
function mockNetwork (t: Test) {
  const agent = new MockAgent()
  agent.disableNetConnect()
  const pinned: ResolvedAddress[][] = []
  t.teardown(() => agent.close())
  return { agent, pinned, dispatcherFor: (addresses: ResolvedAddress[]) => { pinned.push(addresses); return agent } }
}

async function rejection (promise: Promise<unknown>): Promise<AppError> {
  try {
    await promise
  } catch (error) {
    return error as AppError
  }
  throw new Error('expected a rejection')
}

async function loopbackServer (t: Test, handler: (req: IncomingMessage, res: ServerResponse) => void, host = '127.0.0.1') {
  const server: Server = createServer(handler)
  await new Promise<void>((resolve) => server.listen(0, host, resolve))
  t.teardown(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }))
  return `http://${host}:${(server.address() as AddressInfo).port}`
}

const readAll = async (body: AsyncIterable<Buffer>) => {
  const chunks: Buffer[] = []
  for await (const chunk of body) chunks.push(chunk)
  return Buffer.concat(chunks)
}

t.test('SR-36: a redirect to loopback, private, metadata or a name resolving there is refused (escape hatch off)', async (t) => {
  const targets: Array<[string, string]> = [
    ['http://127.0.0.1:8080/admin', 'loopback'],
    ['http://[::1]/', 'loopback'],
    ['http://localhost:3000/', 'loopback'],
    ['http://10.0.0.5/', 'private'],
    ['http://169.254.169.254/latest/meta-data/iam/', 'link_local'],
    ['http://internal.test/', 'private'],
    ['http://[::ffff:169.254.169.254]/', 'link_local']
  ]
  for (const [location, range] of targets) {
    const network = mockNetwork(t)
    const { resolve } = stubResolver({ 'public.test': ['93.184.216.34'], localhost: ['127.0.0.1', '::1'], 'internal.test': ['10.1.1.1'] })
    network.agent.get('http://public.test').intercept({ path: '/start' }).reply(302, '', { headers: { location } })
    const error = await rejection(safeFetch('http://public.test/start', { ...base, resolve, dispatcherFor: network.dispatcherFor }))
    t.equal(error.code, 'URL_NOT_ALLOWED', location)
    t.match(error.details, { reason: 'non_public_address', range }, `${location}: ${range}`)
    t.equal(network.pinned.length, 1, 'the refused hop never got a dispatcher')
  }
})

t.test('SR-36: DNS rebinding: each hop resolves again and is pinned to what was checked', async (t) => {
  const network = mockNetwork(t)
  let answers = 0
  const { resolve, calls } = stubResolver({ 'flip.test': () => (answers++ === 0 ? ['93.184.216.34'] : ['127.0.0.1']) })
  network.agent.get('http://flip.test').intercept({ path: '/a' }).reply(302, '', { headers: { location: '/b' } })
  const error = await rejection(safeFetch('http://flip.test/a', { ...base, resolve, dispatcherFor: network.dispatcherFor }))
  t.equal(error.code, 'URL_NOT_ALLOWED')
  t.match(error.details, { range: 'loopback' })
  t.same(calls, ['flip.test', 'flip.test'], 'resolved once per hop')
  t.same(network.pinned, [[{ address: '93.184.216.34', family: 4 }]], 'the first hop was pinned to the address that passed the check')
})

t.test('SR-36: at most N redirects; other schemes refused; 4xx/5xx reported', async (t) => {
  const { resolve } = stubResolver({ 'public.test': ['93.184.216.34'] })
  const chain = (network: ReturnType<typeof mockNetwork>, hops: number) => {
    const origin = network.agent.get('http://public.test')
    for (let i = 0; i < hops; i++) origin.intercept({ path: `/r${i}` }).reply(302, '', { headers: { location: `/r${i + 1}` } })
    origin.intercept({ path: `/r${hops}` }).reply(200, 'done', { headers: { 'content-type': 'text/plain' } })
  }
  const three = mockNetwork(t)
  chain(three, 3)
  const ok = await safeFetch('http://public.test/r0', { ...base, resolve, dispatcherFor: three.dispatcherFor })
  t.equal((await readAll(ok.body)).toString(), 'done', 'three redirects are followed')
  t.equal(ok.finalUrl.href, 'http://public.test/r3')

  const four = mockNetwork(t)
  chain(four, 4)
  const tooMany = await rejection(safeFetch('http://public.test/r0', { ...base, resolve, dispatcherFor: four.dispatcherFor }))
  t.equal(tooMany.code, 'URL_FETCH_FAILED')
  t.match(tooMany.details, { reason: 'too_many_redirects', max: 3 })

  const scheme = mockNetwork(t)
  scheme.agent.get('http://public.test').intercept({ path: '/x' }).reply(301, '', { headers: { location: 'file:///etc/passwd' } })
  const fileError = await rejection(safeFetch('http://public.test/x', { ...base, resolve, dispatcherFor: scheme.dispatcherFor }))
  t.equal(fileError.code, 'URL_NOT_ALLOWED')
  t.match(fileError.details, { reason: 'scheme', scheme: 'file' })

  const missing = mockNetwork(t)
  missing.agent.get('http://public.test').intercept({ path: '/gone' }).reply(404, 'nope')
  const notFound = await rejection(safeFetch('http://public.test/gone', { ...base, resolve, dispatcherFor: missing.dispatcherFor }))
  t.equal(notFound.code, 'URL_FETCH_FAILED')
  t.match(notFound.details, { reason: 'status', upstream_status: 404 })
})

t.test('credentials in the URL are never sent; an announced oversize body is refused unread', async (t) => {
  const { resolve } = stubResolver({ 'public.test': ['93.184.216.34'] })
  const network = mockNetwork(t)
  let seen: Record<string, unknown> = {}
  network.agent.get('http://public.test').intercept({ path: '/f' }).reply((options) => {
    seen = options.headers as Record<string, unknown>
    return { statusCode: 200, data: 'hi' }
  })
  const fetched = await safeFetch('http://alice:hunter2@public.test/f', { ...base, resolve, dispatcherFor: network.dispatcherFor })
  t.equal((await readAll(fetched.body)).toString(), 'hi')
  t.notOk(Object.keys(seen).some((h) => h.toLowerCase() === 'authorization'), 'no Authorization header built from the URL')
  t.equal(fetched.finalUrl.username, '')

  const big = mockNetwork(t)
  big.agent.get('http://public.test').intercept({ path: '/big' }).reply(200, 'x', { headers: { 'content-length': String(10 * 1024 * 1024) } })
  const error = await rejection(safeFetch('http://public.test/big', { ...base, resolve, dispatcherFor: big.dispatcherFor }))
  t.equal(error.code, 'FILE_TOO_LARGE')
})

t.test('the connection goes to the checked address, not to a second DNS answer (real socket on 127.0.0.2)', async (t) => {
  const hosts: string[] = []
  const origin = await loopbackServer(t, (req, res) => { hosts.push(String(req.headers.host)); res.end('pinned') }, '127.0.0.2')
  const port = new URL(origin).port
  // Real DNS would send "localhost" to 127.0.0.1 or ::1, where nothing listens on this port.
  const { resolve, calls } = stubResolver({ localhost: ['127.0.0.2'] })
  const fetched = await safeFetch(`http://localhost:${port}/file`, { ...base, resolve, allowLoopback: true })
  t.equal((await readAll(fetched.body)).toString(), 'pinned')
  t.same(hosts, [`localhost:${port}`], 'the Host header still names the host')
  t.same(calls, ['localhost'], 'one lookup, by the checker; the connector asked no one')
})

t.test('SR-36: one deadline covers a silent server, a dripping body and a lookup that never answers', async (t) => {
  const silent = await loopbackServer(t, () => { /* never answers */ })
  const started = Date.now()
  const headers = await rejection(safeFetch(`${silent}/slow`, { ...base, timeoutMs: 300, allowLoopback: true }))
  t.equal(headers.code, 'URL_FETCH_FAILED')
  t.match(headers.details, { reason: 'timeout' })
  t.ok(Date.now() - started < 4000, 'gave up instead of waiting for the server')

  const drip = await loopbackServer(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream' })
    const timer = setInterval(() => res.write('x'), 50)
    res.on('close', () => clearInterval(timer))
  })
  const fetched = await safeFetch(`${drip}/drip`, { ...base, timeoutMs: 400, allowLoopback: true })
  const body = await rejection(readAll(fetched.body))
  t.equal(body.code, 'URL_FETCH_FAILED', 'a body that keeps coming still ends at the deadline')
  t.match(body.details, { reason: 'timeout' })

  const never: Resolver = () => new Promise(() => {})
  const dns = await rejection(safeFetch('http://hangs.test/', { ...base, timeoutMs: 200, resolve: never }))
  t.equal(dns.code, 'URL_FETCH_FAILED')
  t.match(dns.details, { reason: 'timeout' })
})

t.test('a streamed body past the cap is cut with FILE_TOO_LARGE', async (t) => {
  const origin = await loopbackServer(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream' })
    res.end(Buffer.alloc(300 * 1024))
  })
  const fetched = await safeFetch(`${origin}/big`, { ...base, maxBytes: 100 * 1024, allowLoopback: true })
  const error = await rejection(readAll(fetched.body))
  t.equal(error.code, 'FILE_TOO_LARGE')
})

t.test('SR-36: loopback itself is refused while the escape hatch is off', async (t) => {
  let hits = 0
  const origin = await loopbackServer(t, (_req, res) => { hits++; res.end('x') })
  const port = new URL(origin).port
  for (const url of [origin, `http://[::1]:${port}/`, `http://localhost:${port}/`, `http://127.1:${port}/`, `http://0x7f000001:${port}/`]) {
    const error = await rejection(safeFetch(url, base))
    t.equal(error.code, 'URL_NOT_ALLOWED', url)
  }
  t.equal(hits, 0, 'no request reached the server')
})

t.test('SR-36: an undici timeout that fires before the deadline is still reported as a timeout', async (t) => {
  // The fetcher gives undici's headers/body timeouts the deadline's length; on a busy
  // event loop one of them can fire first. That is a timeout, not a failed connection.
  const { errors } = await import('undici')
  const { resolve } = stubResolver({ 'public.test': ['93.184.216.34'] })
  const network = mockNetwork(t)
  const origin = network.agent.get('http://public.test')
  origin.intercept({ path: '/headers' }).replyWithError(new errors.HeadersTimeoutError())
  origin.intercept({ path: '/connect-timeout' }).replyWithError(new errors.ConnectTimeoutError())
  origin.intercept({ path: '/refused' }).replyWithError(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }))
  const reasonOf = async (path: string) => (await rejection(safeFetch(`http://public.test${path}`, { ...base, resolve, dispatcherFor: network.dispatcherFor }))).details
  t.match(await reasonOf('/headers'), { reason: 'timeout' })
  t.match(await reasonOf('/connect-timeout'), { reason: 'timeout' })
  t.match(await reasonOf('/refused'), { reason: 'connect', host: 'public.test' }, 'a refused connection stays "connect"')
})
