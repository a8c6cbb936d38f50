import t, { type Test } from 'tap'
import { existsSync, readdirSync } from 'node:fs'
import path from 'node:path'
import { request as httpRequest } from 'node:http'
import { and, eq } from 'drizzle-orm'
import { buildContext } from '../helpers/build.ts'
import { bearer, createUser, login } from '../helpers/users.ts'
import { activityLog, media } from '../../db/schema/index.ts'
import { catalogs } from '../../i18n/index.ts'
import { docx, elf, form, html, jpegWithGps, mp4, pdf, png, windowsExe } from './samples.ts'

const mediaUrl = '/api/v1/upload/media'

async function setup (t: Test, env: Record<string, string> = {}, deps = {}) {
  const ctx = await buildContext(t, env, deps)
  const signIn = async (groups = ['user']) => {
    const account = await createUser(ctx.app, { groups })
    const tokens = await login(ctx.app, account.email!)
    return { id: account.user_id, headers: bearer(tokens.access_token) }
  }
  const upload = async (headers: Record<string, string>, file: Buffer, filename: string, type?: string) => {
    const body = await form(file, filename, type)
    return ctx.app.inject({ method: 'POST', url: mediaUrl, payload: body.payload, headers: { ...headers, ...body.headers } })
  }
  const uploadsDir = path.join(ctx.env.DATA_DIR, 'uploads')
  const storedFiles = () => existsSync(path.join(uploadsDir, 'media')) ? readdirSync(path.join(uploadsDir, 'media')) : []
  return { ...ctx, signIn, upload, uploadsDir, storedFiles }
}

t.test('SR-35: the type comes from the content, whatever the name or the declared type', async (t) => {
  const { app, signIn, upload, uploadsDir } = await setup(t)
  const alice = await signIn()
  const cases: Array<[Buffer, string, string | undefined, string, string, string]> = [
    [await png(), 'photo.png', 'image/png', 'image/png', 'png', 'image'],
    [await png(), 'invoice.pdf', 'application/pdf', 'image/png', 'png', 'image'],
    [await jpegWithGps(64, 48), 'holiday.jpeg', undefined, 'image/jpeg', 'jpg', 'image'],
    [pdf(), 'report.bin', 'application/octet-stream', 'application/pdf', 'pdf', 'pdf'],
    [mp4(), 'clip.mp4', 'video/mp4', 'video/mp4', 'mp4', 'video'],
    [docx(), 'letter.docx', undefined, 'application/vnd.openxmlformats-officedocument.wordprocessingml.document', 'docx', 'document']
  ]
  for (const [file, name, declared, mime, ext, category] of cases) {
    const res = await upload(alice.headers, file, name, declared)
    t.equal(res.statusCode, 201, `${name}: ${res.body.slice(0, 200)}`)
    const data = res.json().data
    t.equal(data.mime_type, mime, `${name} is ${mime}`)
    t.equal(data.extension, ext)
    t.equal(data.category, category)
    t.equal(data.name, name, 'the sent name is kept for display')
    t.equal(data.size_bytes, file.length)
    t.equal(data.owner_id, alice.id)
    t.equal(data.purpose, 'media')
    t.equal(res.json().message, 'File uploaded')
    const [row] = await app.db.select().from(media).where(eq(media.media_id, data.file_id))
    t.match(row.object_key, new RegExp(`^media/[0-9a-f-]{36}\\.${ext}$`), 'SR-37: the object name is server-made')
    t.notOk(row.object_key.includes(name.split('.')[0]), 'the client name is not part of it')
    t.equal(row.checksum_sha256, (await import('node:crypto')).createHash('sha256').update(file).digest('hex'))
    t.ok(existsSync(path.join(uploadsDir, row.object_key)), 'stored under DATA_DIR/uploads')
  }
})

t.test('SR-35: HTML named .png, executables and unknown content are refused with 415, and nothing is stored', async (t) => {
  const { app, signIn, upload, storedFiles, uploadsDir } = await setup(t)
  const alice = await signIn()
  const cases: Array<[Buffer, string, string, string | null]> = [
    [html(), 'cat.png', 'image/png', null],
    [elf(), 'tool.jpg', 'image/jpeg', 'application/x-elf'],
    [windowsExe(), 'setup.pdf', 'application/pdf', 'application/x-msdownload'],
    [Buffer.from('just some text\n'), 'notes.txt', 'text/plain', null],
    [Buffer.alloc(0), 'empty.png', 'image/png', null]
  ]
  for (const [file, name, declared, detected] of cases) {
    const res = await upload(alice.headers, file, name, declared)
    t.equal(res.statusCode, 415, name)
    const body = res.json()
    t.equal(body.success, false)
    t.equal(body.error.code, 'FILE_TYPE_NOT_ALLOWED')
    t.equal(body.error.details.detected, detected, `${name}: detected ${detected}`)
    t.ok(body.error.id, 'the error envelope carries the request id')
  }
  t.same(storedFiles(), [], 'no object was written')
  t.same(existsSync(path.join(uploadsDir, '.tmp')) ? readdirSync(path.join(uploadsDir, '.tmp')) : [], [], 'no partial file')
  t.equal((await app.db.select().from(media).where(eq(media.user_id, alice.id))).length, 0, 'no row')
})

t.test('SR-30/SR-35: each type has its own size limit; oversize is a 413 envelope and leaves nothing behind', async (t) => {
  const { app, signIn, upload, storedFiles } = await setup(t, { UPLOAD_MAX_BYTES_IMAGE: '2048', UPLOAD_MAX_BYTES_VIDEO: '300000' })
  const alice = await signIn()
  const bigPng = await png(400, 400)
  t.ok(bigPng.length > 2048)
  const tooBig = await upload(alice.headers, bigPng, 'big.png', 'image/png')
  t.equal(tooBig.statusCode, 413)
  t.equal(tooBig.json().success, false)
  t.equal(tooBig.json().error.code, 'FILE_TOO_LARGE')
  t.same(tooBig.json().error.details, { category: 'image', max_bytes: 2048 })

  const video = await upload(alice.headers, mp4(200_000), 'clip.mp4', 'video/mp4')
  t.equal(video.statusCode, 201, 'a 200 kB video fits the video limit although it is far above the image one')
  const hugeVideo = await upload(alice.headers, mp4(400_000), 'long.mp4', 'video/mp4')
  t.equal(hugeVideo.statusCode, 413, 'and the video limit holds too')
  t.same(hugeVideo.json().error.details, { category: 'video', max_bytes: 300000 })
  t.equal(storedFiles().length, 1, 'only the accepted file is stored')
  t.equal((await app.db.select().from(media).where(eq(media.user_id, alice.id))).length, 1)
})

t.test('bodies: JSON must be exactly { url }, multipart must carry a file, other types are 415', async (t) => {
  const { app, signIn } = await setup(t)
  const alice = await signIn()
  const unknown = await app.inject({ method: 'POST', url: mediaUrl, headers: alice.headers, payload: { url: 'https://example.com/a.png', owner_id: 'x' } })
  t.equal(unknown.statusCode, 400)
  t.equal(unknown.json().error.code, 'VALIDATION_ERROR')
  const missing = await app.inject({ method: 'POST', url: mediaUrl, headers: alice.headers, payload: {} })
  t.equal(missing.statusCode, 400)
  const text = await app.inject({ method: 'POST', url: mediaUrl, headers: { ...alice.headers, 'content-type': 'text/plain' }, payload: 'hello' })
  t.equal(text.statusCode, 415)
  t.equal(text.json().error.code, 'UNSUPPORTED_MEDIA_TYPE')
  const fieldsOnly = new FormData()
  fieldsOnly.append('note', 'no file here')
  const response = new Response(fieldsOnly)
  const noFile = await app.inject({
    method: 'POST',
    url: mediaUrl,
    headers: { ...alice.headers, 'content-type': response.headers.get('content-type')! },
    payload: Buffer.from(await response.arrayBuffer())
  })
  t.equal(noFile.statusCode, 400)
  t.equal(noFile.json().error.code, 'VALIDATION_ERROR')
})

t.test('SR-24: uploading needs add_upload', async (t) => {
  const { signIn, upload, app } = await setup(t)
  const nobody = await signIn([])
  const res = await upload(nobody.headers, await png(), 'a.png')
  t.equal(res.statusCode, 403)
  t.equal(res.json().error.code, 'FORBIDDEN')
  const anonymous = await app.inject({ method: 'POST', url: mediaUrl, payload: { url: 'https://example.com/' } })
  t.equal(anonymous.statusCode, 401)
})

t.test('GET P/upload/media lists only the caller\'s files, newest first, with cursor pagination', async (t) => {
  let clock = Date.parse('2030-01-01T00:00:00Z')
  const { signIn, upload, app } = await setup(t, {}, { now: () => clock })
  const alice = await signIn()
  const bob = await signIn()
  const ids: string[] = []
  for (let i = 0; i < 5; i++) {
    clock += 1000
    ids.push((await upload(alice.headers, await png(8 + i, 8), `a${i}.png`)).json().data.file_id)
  }
  await upload(bob.headers, await png(), 'bob.png')

  const first = await app.inject({ method: 'GET', url: `${mediaUrl}?limit=2`, headers: alice.headers })
  t.equal(first.statusCode, 200)
  t.same(first.json().data.map((f: { file_id: string }) => f.file_id), [ids[4], ids[3]])
  t.equal(first.json().meta.pagination.total, 5)
  const cursor = first.json().meta.pagination.next_cursor
  t.type(cursor, 'string')
  const second = await app.inject({ method: 'GET', url: `${mediaUrl}?limit=2&cursor=${cursor}`, headers: alice.headers })
  t.same(second.json().data.map((f: { file_id: string }) => f.file_id), [ids[2], ids[1]])
  const third = await app.inject({ method: 'GET', url: `${mediaUrl}?limit=2&cursor=${second.json().meta.pagination.next_cursor}`, headers: alice.headers })
  t.same(third.json().data.map((f: { file_id: string }) => f.file_id), [ids[0]])
  t.equal(third.json().meta.pagination.next_cursor, null)
  const offset = await app.inject({ method: 'GET', url: `${mediaUrl}?limit=2&offset=4`, headers: alice.headers })
  t.same(offset.json().data.map((f: { file_id: string }) => f.file_id), [ids[0]])

  const bobs = await app.inject({ method: 'GET', url: mediaUrl, headers: bob.headers })
  t.equal(bobs.json().data.length, 1, 'bob sees only his file')
  t.notOk(JSON.stringify(bobs.json()).includes('object_key'), 'the object key never leaves the server')
  const bad = await app.inject({ method: 'GET', url: `${mediaUrl}?cursor=not-a-cursor`, headers: alice.headers })
  t.equal(bad.statusCode, 400)
})

t.test('local files come back through a signed, expiring URL only', async (t) => {
  let clock = Date.now()
  const { signIn, upload, app } = await setup(t, { STORAGE_SIGNED_URL_TTL_SECONDS: '600' }, { now: () => clock })
  const alice = await signIn()
  const file = await png()
  const data = (await upload(alice.headers, file, 'x.png')).json().data
  t.match(data.url, /^\/api\/v1\/upload\/files\/media\/[0-9a-f-]{36}\.png\?expires=\d+&signature=[\w-]+$/)
  t.equal(Date.parse(data.url_expires_at), Math.floor((clock + 600_000) / 1000) * 1000)

  const ok = await app.inject({ method: 'GET', url: data.url })
  t.equal(ok.statusCode, 200, 'no credential needed: the signature is the permission')
  t.ok(ok.rawPayload.equals(file), 'the same bytes')
  t.equal(ok.headers['content-type'], 'image/png', 'the detected type, not what the client declared')
  t.equal(ok.headers['x-content-type-options'], 'nosniff')
  t.match(ok.headers['content-security-policy'], /sandbox/)

  const url = new URL(data.url, 'http://x')
  const tampered = `${url.pathname}?expires=${Number(url.searchParams.get('expires')) + 3600}&signature=${url.searchParams.get('signature')}`
  const broken = await app.inject({ method: 'GET', url: tampered })
  t.equal(broken.statusCode, 403, 'a longer expiry breaks the signature')
  t.equal(broken.json().error.code, 'DOWNLOAD_LINK_INVALID')
  t.equal(broken.json().error.message, catalogs.en['errors.DOWNLOAD_LINK_INVALID'], 'the message speaks of the link, not of permissions')
  t.equal((await app.inject({ method: 'GET', url: url.pathname })).statusCode, 403, 'no signature, no file')
  const otherKey = `/api/v1/upload/files/media/00000000-0000-4000-8000-000000000000.png${url.search}`
  t.equal((await app.inject({ method: 'GET', url: otherKey })).statusCode, 403, 'a signature is bound to its key')
  t.equal((await app.inject({ method: 'GET', url: '/api/v1/upload/files/media/..%2F..%2Fsecret.key' })).statusCode, 404)

  clock += 601_000
  const expired = await app.inject({ method: 'GET', url: data.url })
  t.equal(expired.statusCode, 403, 'expired after the TTL')
  t.equal(expired.json().error.code, 'DOWNLOAD_LINK_INVALID', 'a link of its own code, not a missing permission')
})

t.test('SR-37/SR-25: only the owner or delete_upload deletes; someone else\'s id is a 404 (IDOR)', async (t) => {
  const { signIn, upload, app, uploadsDir } = await setup(t)
  const alice = await signIn()
  const mallory = await signIn()
  const admin = await signIn(['admin'])
  const file = (await upload(alice.headers, await png(), 'mine.png')).json().data
  const [row] = await app.db.select().from(media).where(eq(media.media_id, file.file_id))

  const idor = await app.inject({ method: 'DELETE', url: `${mediaUrl}/${file.file_id}`, headers: mallory.headers })
  t.equal(idor.statusCode, 404)
  t.equal(idor.json().error.code, 'MEDIA_NOT_FOUND')
  const unknown = await app.inject({ method: 'DELETE', url: `${mediaUrl}/00000000-0000-4000-8000-000000000000`, headers: mallory.headers })
  t.same({ status: unknown.statusCode, code: unknown.json().error.code }, { status: idor.statusCode, code: idor.json().error.code }, 'indistinguishable from a missing file')
  t.ok(existsSync(path.join(uploadsDir, row.object_key)), 'the file is untouched')
  const malformed = await app.inject({ method: 'DELETE', url: `${mediaUrl}/not-a-uuid`, headers: alice.headers })
  t.equal(malformed.statusCode, 400)

  const own = await app.inject({ method: 'DELETE', url: `${mediaUrl}/${file.file_id}`, headers: alice.headers })
  t.equal(own.statusCode, 200)
  t.same(own.json().data, { file_id: file.file_id, deleted: true, object_was_missing: false })
  t.notOk(existsSync(path.join(uploadsDir, row.object_key)), 'the object is gone')
  t.equal((await app.db.select().from(media).where(eq(media.media_id, file.file_id))).length, 0, 'the row is gone')

  const other = (await upload(mallory.headers, await png(), 'mallory.png')).json().data
  const byAdmin = await app.inject({ method: 'DELETE', url: `${mediaUrl}/${other.file_id}`, headers: admin.headers })
  t.equal(byAdmin.statusCode, 200, 'delete_upload deletes anyone\'s file')
  await app.activity.flush()
  const [audit] = await app.db.select().from(activityLog).where(and(eq(activityLog.action, 'media_delete'), eq(activityLog.user_id, admin.id)))
  t.equal(audit.target_user_id, mallory.id, 'the audit row names the owner as target')
})

t.test('a storage failure on delete is reported (502) and keeps the row; a missing object is said so; removing all of a user\'s files', async (t) => {
  const { signIn, upload, app, uploadsDir } = await setup(t)
  const alice = await signIn()
  const file = (await upload(alice.headers, await png(), 'a.png')).json().data
  const driver = app.storage.driver as { delete: (key: string) => Promise<boolean> }
  const original = driver.delete
  driver.delete = async () => { throw Object.assign(new Error('EACCES: permission denied'), { code: 'EACCES' }) }
  const failed = await app.inject({ method: 'DELETE', url: `${mediaUrl}/${file.file_id}`, headers: alice.headers })
  t.equal(failed.statusCode, 502)
  t.equal(failed.json().error.code, 'STORAGE_ERROR')
  t.equal((await app.db.select().from(media).where(eq(media.media_id, file.file_id))).length, 1, 'the row stays, so the delete can be retried')
  driver.delete = original
  t.equal((await app.inject({ method: 'DELETE', url: `${mediaUrl}/${file.file_id}`, headers: alice.headers })).statusCode, 200, 'the retry works')

  const orphan = (await upload(alice.headers, await png(), 'b.png')).json().data
  const [row] = await app.db.select().from(media).where(eq(media.media_id, orphan.file_id))
  await (await import('node:fs/promises')).unlink(path.join(uploadsDir, row.object_key))
  const missing = await app.inject({ method: 'DELETE', url: `${mediaUrl}/${orphan.file_id}`, headers: alice.headers })
  t.equal(missing.statusCode, 200)
  t.equal(missing.json().data.object_was_missing, true, 'reported, not hidden')

  // Account deletion removes every file; one the storage refuses keeps its row instead of becoming an orphan.
  const keep = (await upload(alice.headers, await png(), 'c.png')).json().data
  await upload(alice.headers, await png(), 'd.png')
  const [keepRow] = await app.db.select().from(media).where(eq(media.media_id, keep.file_id))
  driver.delete = async (key) => {
    if (key === keepRow.object_key) throw new Error('EIO')
    return original(key)
  }
  t.same(await app.uploads.removeAllForUser(alice.id), { deleted: 1, failed: 1 })
  driver.delete = original
  t.same((await app.db.select().from(media).where(eq(media.user_id, alice.id))).map((r) => r.media_id), [keep.file_id])
  t.ok(existsSync(path.join(uploadsDir, keepRow.object_key)))
})

t.test('P/health/storage checks the configured driver, at most once per STORAGE_HEALTH_CACHE_SECONDS', async (t) => {
  let clock = Date.now()
  const { app } = await setup(t, { STORAGE_HEALTH_CACHE_SECONDS: '30' }, { now: () => clock })
  const driver = app.storage.driver
  const realCheck = driver.check.bind(driver)
  let probes = 0
  driver.check = async () => { probes++; return realCheck() }
  const health = () => app.inject({ method: 'GET', url: '/api/v1/health/storage' })

  const res = await health()
  t.equal(res.statusCode, 200)
  t.match(res.json().data, { status: 'up', driver: 'local', checked_at: new Date(clock).toISOString() })
  // A public route: a flood of calls, in parallel and in a row, probes no more.
  const flood = await Promise.all(Array.from({ length: 20 }, health))
  for (let i = 0; i < 10; i++) flood.push(await health())
  t.ok(flood.every((r) => r.statusCode === 200))
  t.equal(probes, 1, 'one probe for 31 calls within the period')

  driver.check = async () => { probes++; throw new Error('disk full') }
  clock += 29_000
  t.equal((await health()).statusCode, 200, 'still the cached result')
  clock += 1_000
  const down = await health()
  t.equal(down.statusCode, 503, 'a new period probes again')
  t.equal(down.json().error.code, 'SERVICE_UNAVAILABLE')
  t.equal(probes, 2)
})

t.test('a refused upload closes the connection (the rest of its body would go into a dead socket); other answers keep it', async (t) => {
  const ctx = await buildContext(t)
  await ctx.app.listen({ port: 0, host: '127.0.0.1' })
  const port = (ctx.app.server.address() as { port: number }).port
  // Announces 10 MB, sends 1 KB and waits: the 401 comes before the body is read.
  const answer = (url: string, headers: Record<string, string>, body: Buffer | undefined) => new Promise<{ status: number, connection: string | undefined }>((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method: body ? 'POST' : 'GET', path: url, headers }, (res) => {
      res.resume()
      resolve({ status: res.statusCode!, connection: res.headers.connection })
      req.destroy()
    })
    req.on('error', reject)
    if (body) req.write(body)
    else req.end()
  })
  const refused = await answer('/api/v1/upload/media', { 'content-type': 'multipart/form-data; boundary=x', 'content-length': String(10 * 1024 * 1024) }, Buffer.alloc(1024))
  t.equal(refused.status, 401)
  t.equal(refused.connection, 'close', 'refused before its body was read: Connection: close')
  const elsewhere = await answer('/api/v1/settings/profile', {}, undefined)
  t.equal(elsewhere.status, 401)
  t.equal(elsewhere.connection, 'keep-alive', 'an answer outside the upload routes keeps the connection')
})
