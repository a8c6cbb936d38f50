import t, { type Test } from 'tap'
import { existsSync, readdirSync } from 'node:fs'
import path from 'node:path'
import { request as httpRequest } from 'node:http'
import { eq } from 'drizzle-orm'
import { buildContext } from '../helpers/build.ts'
import { bearer, createUser, login } from '../helpers/users.ts'
import { media } from '../../db/schema/index.ts'
import { form, mp4 } from './samples.ts'

/**
 * SR-37's owner as the unit of storage: UPLOAD_QUOTA_BYTES_PER_USER bounds the
 * sizes of a user's media together (413 UPLOAD_QUOTA_EXCEEDED), before the
 * body is read when its length says so, while it streams, and when the row is
 * written, so parallel uploads cannot race past it; UPLOAD_RATE_LIMIT_PER_MINUTE
 * bounds POST upload/media per user.
 */
const mediaUrl = '/api/v1/upload/media'
const fileBytes = 40_000

async function setup (t: Test, env: Record<string, string>) {
  const ctx = await buildContext(t, env)
  const signIn = async () => {
    const account = await createUser(ctx.app, { groups: ['user'] })
    return { id: account.user_id, headers: bearer((await login(ctx.app, account.email!)).access_token) }
  }
  const upload = async (headers: Record<string, string>, file: Buffer, url = mediaUrl) => {
    const body = await form(file, 'clip.mp4')
    return ctx.app.inject({ method: 'POST', url, payload: body.payload, headers: { ...headers, ...body.headers } })
  }
  const mediaDir = path.join(ctx.env.DATA_DIR, 'uploads', 'media')
  const storedFiles = () => existsSync(mediaDir) ? readdirSync(mediaDir).filter((f) => !f.startsWith('.')) : []
  const usedBytes = async (userId: string) => (await ctx.app.db.select().from(media).where(eq(media.user_id, userId))).reduce((sum, r) => sum + r.size_bytes, 0)
  return { ...ctx, signIn, upload, storedFiles, usedBytes }
}

t.test('UPLOAD_QUOTA_BYTES_PER_USER: files past the quota are refused with 413 UPLOAD_QUOTA_EXCEEDED, per user, and deleting frees room', async (t) => {
  const quota = 2 * fileBytes + 1000
  const { signIn, upload, storedFiles, usedBytes, app } = await setup(t, { UPLOAD_QUOTA_BYTES_PER_USER: String(quota) })
  const alice = await signIn()
  const first = await upload(alice.headers, mp4(fileBytes))
  t.equal(first.statusCode, 201, first.body.slice(0, 200))
  t.equal((await upload(alice.headers, mp4(fileBytes))).statusCode, 201)
  t.equal(await app.uploads.usedBytes(alice.id), 2 * fileBytes)

  const over = await upload(alice.headers, mp4(fileBytes))
  t.equal(over.statusCode, 413)
  t.equal(over.json().error.code, 'UPLOAD_QUOTA_EXCEEDED')
  t.same(over.json().error.details, { quota_bytes: quota, used_bytes: 2 * fileBytes }, 'says the quota and what is used')
  const small = await upload(alice.headers, mp4(900))
  t.equal(small.statusCode, 201, 'what still fits is accepted')
  t.equal((await upload(alice.headers, mp4(200))).statusCode, 413, 'one byte past it is not')
  t.equal(await usedBytes(alice.id), 2 * fileBytes + 900)
  t.equal(storedFiles().length, 3, 'no object of a refused upload is left behind')

  const french = await upload(alice.headers, mp4(fileBytes), `${mediaUrl}?lang=fr`)
  t.match(french.json().error.message, /quota de stockage/, 'translated')

  const bob = await signIn()
  t.equal((await upload(bob.headers, mp4(fileBytes))).statusCode, 201, 'another user has a quota of their own')

  const deleted = await app.inject({ method: 'DELETE', url: `${mediaUrl}/${first.json().data.file_id}`, headers: alice.headers })
  t.equal(deleted.statusCode, 200)
  t.equal((await upload(alice.headers, mp4(fileBytes))).statusCode, 201, 'deleting a file frees its bytes')
})

t.test('the quota is checked before the body is read when Content-Length already says too much, and while it streams otherwise', async (t) => {
  const quota = 100_000
  const ctx = await setup(t, { UPLOAD_QUOTA_BYTES_PER_USER: String(quota) })
  const alice = await ctx.signIn()
  await ctx.app.listen({ port: 0, host: '127.0.0.1' })
  const port = (ctx.app.server.address() as { port: number }).port

  // Announces a 10 MB form and sends its first 64 KiB only: the answer must come without the rest.
  const body = await form(mp4(10_000_000), 'big.mp4')
  const answer = await new Promise<{ status: number, body: string }>((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method: 'POST', path: mediaUrl, headers: { ...alice.headers, ...body.headers, 'content-length': String(body.payload.length) } }, (res) => {
      let text = ''
      res.on('data', (c) => { text += c })
      res.on('end', () => { resolve({ status: res.statusCode!, body: text }); req.destroy() })
    })
    req.on('error', reject)
    req.write(body.payload.subarray(0, 64 * 1024))
  })
  t.equal(answer.status, 413, 'answered with most of the body unsent')
  t.equal(JSON.parse(answer.body).error.code, 'UPLOAD_QUOTA_EXCEEDED')

  // 120 kB in a form whose length does not prove it is past the quota: cut off while streaming.
  const streamed = await ctx.upload(alice.headers, mp4(120_000))
  t.equal(streamed.statusCode, 413)
  t.equal(streamed.json().error.code, 'UPLOAD_QUOTA_EXCEEDED')
  t.same(ctx.storedFiles(), [], 'nothing stored')
  t.equal(await ctx.usedBytes(alice.id), 0)
})

t.test('parallel uploads cannot race past the quota: the rows are written one owner at a time', async (t) => {
  const fits = 3
  const quota = fits * fileBytes + fileBytes / 2
  const { signIn, upload, storedFiles, usedBytes } = await setup(t, { UPLOAD_QUOTA_BYTES_PER_USER: String(quota) })
  const alice = await signIn()
  const results = await Promise.all(Array.from({ length: 8 }, () => upload(alice.headers, mp4(fileBytes))))
  const statuses = results.map((r) => r.statusCode).sort()
  t.same(statuses, [201, 201, 201, 413, 413, 413, 413, 413], 'exactly the uploads that fit succeed')
  t.ok(results.filter((r) => r.statusCode === 413).every((r) => r.json().error.code === 'UPLOAD_QUOTA_EXCEEDED'))
  t.equal(await usedBytes(alice.id), fits * fileBytes, 'the quota holds in the database')
  t.equal(storedFiles().length, fits, 'the refused uploads\' objects were deleted')
})

t.test('UPLOAD_RATE_LIMIT_PER_MINUTE: POST upload/media per user, whatever the address', async (t) => {
  const { signIn, app } = await setup(t, { UPLOAD_RATE_LIMIT_PER_MINUTE: '3' })
  const alice = await signIn()
  const send = async (headers: Record<string, string>, ip: string) => {
    const body = await form(mp4(1000), 'c.mp4')
    return app.inject({ method: 'POST', url: mediaUrl, payload: body.payload, headers: { ...headers, ...body.headers }, remoteAddress: ip })
  }
  for (let i = 0; i < 3; i++) t.equal((await send(alice.headers, `10.0.0.${i + 1}`)).statusCode, 201)
  const limited = await send(alice.headers, '10.0.0.9')
  t.equal(limited.statusCode, 429, 'the fourth in a minute, from a fresh address')
  t.equal(limited.json().error.code, 'RATE_LIMITED')
  t.ok(Number(limited.headers['retry-after']) > 0, 'with Retry-After')
  const url = await app.inject({ method: 'POST', url: mediaUrl, payload: { url: 'https://example.com/x.png' }, headers: alice.headers })
  t.equal(url.statusCode, 429, 'URL uploads count too, and are refused before any fetch')

  const bob = await signIn()
  t.equal((await send(bob.headers, '10.0.0.9')).statusCode, 201, 'another user on the same address is not limited')
  t.equal((await app.inject({ method: 'GET', url: mediaUrl, headers: alice.headers })).statusCode, 200, 'listing is not limited')
})
