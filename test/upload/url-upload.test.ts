import t, { type Test } from 'tap'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { and, eq } from 'drizzle-orm'
import { build } from '../helpers/build.ts'
import { bearer, createUser, login } from '../helpers/users.ts'
import { activityLog, media } from '../../db/schema/index.ts'
import { html, png } from './samples.ts'

/**
 * URL uploads over HTTP. Every server here listens on loopback. With the escape
 * hatch off, loopback targets must be refused before any connection; with it
 * on, a loopback server plays the remote site so redirects, slowness and size
 * caps can be exercised (private, link-local and metadata targets stay refused
 * and are only ever named in redirects, never connected to).
 */

const mediaUrl = '/api/v1/upload/media'

async function origin (t: Test, routes: Record<string, (req: IncomingMessage, res: ServerResponse) => void>) {
  const hits: string[] = []
  const server = createServer((req, res) => {
    hits.push(req.url ?? '')
    const handler = routes[req.url ?? '']
    if (handler) handler(req, res)
    else res.writeHead(404).end('not here')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }))
  return { base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, port: (server.address() as AddressInfo).port, hits }
}

async function signedIn (t: Test, env: Record<string, string>) {
  const app = await build(t, env)
  const account = await createUser(app)
  const headers = bearer((await login(app, account.email!)).access_token)
  const send = (url: string) => app.inject({ method: 'POST', url: mediaUrl, headers, payload: { url } })
  return { app, send, userId: account.user_id }
}

t.test('SR-36: loopback, private, link-local and metadata targets are refused, before any connection', async (t) => {
  const image = await png()
  const site = await origin(t, { '/x.png': (_req, res) => res.writeHead(200, { 'content-type': 'image/png' }).end(image) })
  const { app, send, userId } = await signedIn(t, {})
  const attempts: Array<[string, string]> = [
    [`${site.base}/x.png`, 'loopback'],
    [`http://[::1]:${site.port}/x.png`, 'loopback'],
    [`http://localhost:${site.port}/x.png`, 'loopback'],
    [`http://2130706433:${site.port}/x.png`, 'loopback'],
    ['http://10.0.0.1/x.png', 'private'],
    ['http://192.168.1.10/x.png', 'private'],
    ['http://169.254.169.254/latest/meta-data/iam/security-credentials/', 'link_local'],
    ['http://[fd00:ec2::254]/latest/meta-data/', 'unique_local'],
    ['http://0.0.0.0:80/', 'unspecified']
  ]
  for (const [url, range] of attempts) {
    const res = await send(url)
    t.equal(res.statusCode, 400, url)
    const error = res.json().error
    t.equal(error.code, 'URL_NOT_ALLOWED', url)
    t.match(error.message, /public address/, 'a clear message')
    t.match(error.details, { reason: 'non_public_address', range }, `${url}: ${range}`)
  }
  for (const url of ['file:///etc/passwd', 'ftp://example.com/a.png', 'gopher://127.0.0.1:70/']) {
    const res = await send(url)
    t.equal(res.json().error.code, 'URL_NOT_ALLOWED', url)
  }
  t.same(site.hits, [], 'the loopback server never saw a request')
  t.equal((await app.db.select().from(media).where(eq(media.user_id, userId))).length, 0)
})

t.test('SR-36: with loopback opened for tests, redirects are re-checked, bounded, and the deadline holds', async (t) => {
  const image = await png()
  const redirect = (location: string) => (_req: IncomingMessage, res: ServerResponse) => res.writeHead(302, { location }).end()
  const site = await origin(t, {
    '/pic.png': (_req, res) => res.writeHead(200, { 'content-type': 'image/png', 'content-length': image.length }).end(image),
    '/hop': redirect('/pic.png'),
    '/to-metadata': redirect('http://169.254.169.254/latest/meta-data/'),
    '/to-private': redirect('http://10.0.0.1/internal'),
    '/to-file': redirect('file:///etc/passwd'),
    '/r1': redirect('/r2'),
    '/r2': redirect('/r3'),
    '/r3': redirect('/r4'),
    '/r4': redirect('/pic.png'),
    '/slow': () => { /* accepts, never answers */ },
    '/page.png': (_req, res) => res.writeHead(200, { 'content-type': 'image/png' }).end(html()),
    '/huge': (_req, res) => res.writeHead(200, { 'content-type': 'image/png', 'content-length': 200 * 1024 * 1024 }).end(),
    '/stream': (_req, res) => {
      res.writeHead(200, { 'content-type': 'image/png' })
      res.write(image)
      res.end(Buffer.alloc(64 * 1024))
    },
    '/missing': (_req, res) => res.writeHead(404).end()
  })
  const { app, send, userId } = await signedIn(t, { UPLOAD_URL_ALLOW_LOOPBACK: 'true', UPLOAD_URL_TIMEOUT_MS: '600', UPLOAD_MAX_BYTES_IMAGE: String(32 * 1024) })

  const direct = await send(`${site.base}/pic.png`)
  t.equal(direct.statusCode, 201, direct.body.slice(0, 300))
  t.match(direct.json().data, { mime_type: 'image/png', name: 'pic.png', size_bytes: image.length, purpose: 'media' })
  await app.activity.flush()
  const [audit] = await app.db.select().from(activityLog).where(and(eq(activityLog.action, 'media_upload'), eq(activityLog.user_id, userId)))
  t.match(audit.metadata, { source: 'url', host: '127.0.0.1' })

  const viaRedirect = await send(`${site.base}/hop`)
  t.equal(viaRedirect.statusCode, 201, 'one redirect is followed')

  const expectations: Array<[string, number, string, Record<string, unknown>]> = [
    ['/to-metadata', 400, 'URL_NOT_ALLOWED', { reason: 'non_public_address', range: 'link_local' }],
    ['/to-private', 400, 'URL_NOT_ALLOWED', { reason: 'non_public_address', range: 'private' }],
    ['/to-file', 400, 'URL_NOT_ALLOWED', { reason: 'scheme' }],
    ['/r1', 502, 'URL_FETCH_FAILED', { reason: 'too_many_redirects', max: 3 }],
    ['/slow', 502, 'URL_FETCH_FAILED', { reason: 'timeout' }],
    ['/page.png', 415, 'FILE_TYPE_NOT_ALLOWED', { detected: null }],
    ['/huge', 413, 'FILE_TOO_LARGE', { max_bytes: 100 * 1024 * 1024 }],
    ['/stream', 413, 'FILE_TOO_LARGE', { category: 'image', max_bytes: 32 * 1024 }],
    ['/missing', 502, 'URL_FETCH_FAILED', { reason: 'status', upstream_status: 404 }]
  ]
  for (const [path, status, code, details] of expectations) {
    const res = await send(`${site.base}${path}`)
    t.equal(res.statusCode, status, `${path}: ${res.body.slice(0, 200)}`)
    t.equal(res.json().error.code, code, path)
    t.match(res.json().error.details, details, path)
  }
  t.not(site.hits[site.hits.indexOf('/r4') + 1], '/pic.png', 'the fourth redirect was not followed')
  t.equal((await app.db.select().from(media).where(eq(media.user_id, userId))).length, 2, 'only the two good fetches were stored')
})
