import t from 'tap'
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import path from 'node:path'
import { and, eq } from 'drizzle-orm'
import sharp from 'sharp'
import { buildContext } from '../helpers/build.ts'
import { bearer, createUser, login } from '../helpers/users.ts'
import { media, user } from '../../db/schema/index.ts'
import { form, gpsTags, html, jpegWithGps, pdf, png } from './samples.ts'

const pictureUrl = '/api/v1/settings/profile-picture'

t.test('profile pictures are re-encoded: GPS and other EXIF gone, size bounded, thumbnail made, old one deleted', async (t) => {
  const { app, env } = await buildContext(t, { PROFILE_PICTURE_MAX_DIMENSION: '512', PROFILE_PICTURE_THUMBNAIL_SIZE: '96' })
  const account = await createUser(app)
  const tokens = await login(app, account.email!)
  const headers = bearer(tokens.access_token)
  const send = async (file: Buffer, name: string, type = 'image/jpeg') => {
    const body = await form(file, name, type)
    return app.inject({ method: 'POST', url: pictureUrl, payload: body.payload, headers: { ...headers, ...body.headers } })
  }
  const uploads = path.join(env.DATA_DIR, 'uploads')

  // The session token carries a profile snapshot; read it before, so a stale snapshot would show.
  const before = await app.inject({ method: 'GET', url: '/api/v1/settings/profile', headers: { 'x-session-token': tokens.session_token } })
  t.equal(before.json().data.profile_picture_url, null)

  const original = await jpegWithGps(1600, 1200)
  const originalMeta = await sharp(original).metadata()
  t.ok(gpsTags(originalMeta.exif).includes(0x0002), 'the sample really carries a GPS latitude')

  const res = await send(original, 'me.jpg')
  t.equal(res.statusCode, 200, res.body.slice(0, 300))
  const data = res.json().data
  t.match(data.profile_picture_url, /^\/api\/v1\/upload\/files\/profile-pictures\/[0-9a-f-]{36}\.webp$/)
  t.match(data.thumbnail_url, /^\/api\/v1\/upload\/files\/profile-pictures\/[0-9a-f-]{36}_thumb\.webp$/)
  t.same([data.width, data.height], [512, 384], 'scaled to fit 512 px, aspect kept')
  t.equal(app.images.tasks.profilePicture, 1, 'the image was decoded and re-encoded by the worker pool')
  t.not(await app.images.workerThreadId(), 0, 'whose threads are not the main thread')
  t.equal(res.json().message, 'Profile picture updated')
  t.equal(data.previous_picture_deleted, false, 'issue 18: a first picture had nothing to delete')

  const served = await app.inject({ method: 'GET', url: data.profile_picture_url })
  t.equal(served.statusCode, 200, 'profile pictures are served without a signature')
  t.equal(served.headers['content-type'], 'image/webp')
  const meta = await sharp(served.rawPayload).metadata()
  t.equal(meta.format, 'webp')
  t.same([meta.width, meta.height], [512, 384])
  t.equal(meta.exif, undefined, 'no EXIF at all')
  t.same(gpsTags(meta.exif), [], 'so no GPS position')
  t.equal(meta.icc, undefined, 'no ICC profile')
  t.equal(meta.xmp, undefined, 'no XMP')
  t.notOk(served.rawPayload.includes(Buffer.from('TestCam')), 'the camera model is not in the bytes either')

  const thumb = await app.inject({ method: 'GET', url: data.thumbnail_url })
  const thumbMeta = await sharp(thumb.rawPayload).metadata()
  t.same([thumbMeta.width, thumbMeta.height], [96, 96], 'square thumbnail')
  t.equal(thumbMeta.exif, undefined)

  const after = await app.inject({ method: 'GET', url: '/api/v1/settings/profile', headers: { 'x-session-token': tokens.session_token } })
  t.equal(after.json().data.profile_picture_url, data.profile_picture_url, 'the user state was refreshed: the next request sees the new picture')
  const [row] = await app.db.select().from(user).where(eq(user.user_id, account.user_id))
  t.equal(row.profile_picture_key, data.profile_picture_url.split('/files/')[1])
  const rows = await app.db.select().from(media).where(and(eq(media.user_id, account.user_id), eq(media.purpose, 'profile_picture')))
  t.equal(rows.length, 2, 'a media row for the picture and one for its thumbnail')

  const second = await send(await png(300, 200), 'new.png', 'image/png')
  t.equal(second.statusCode, 200)
  t.equal(second.json().data.previous_picture_deleted, true)
  for (const r of rows) t.notOk(existsSync(path.join(uploads, r.object_key)), `old ${r.object_key} deleted from storage`)
  const remaining = await app.db.select().from(media).where(eq(media.user_id, account.user_id))
  t.same(remaining.map((r) => r.object_key).sort(), [
    second.json().data.profile_picture_url.split('/files/')[1], second.json().data.thumbnail_url.split('/files/')[1]
  ].sort(), 'and from the media table')
  t.same([second.json().data.width, second.json().data.height], [300, 200], 'small pictures are not enlarged')

  const listed = await app.inject({ method: 'GET', url: '/api/v1/upload/media?purpose=profile_picture', headers })
  const main = listed.json().data.find((f: { url: string }) => f.url === second.json().data.profile_picture_url)
  const removed = await app.inject({ method: 'DELETE', url: `/api/v1/upload/media/${main.file_id}`, headers })
  t.equal(removed.statusCode, 200)
  const cleared = await app.inject({ method: 'GET', url: '/api/v1/settings/profile', headers: { 'x-session-token': tokens.session_token } })
  t.equal(cleared.json().data.profile_picture_url, null, 'deleting the current picture clears it from the profile')
  t.equal((await app.db.select().from(media).where(eq(media.user_id, account.user_id))).length, 0, 'thumbnail removed with it')
})

t.test('profile pictures: only decodable images within the image limit; multipart only', async (t) => {
  const { app } = await buildContext(t, { UPLOAD_MAX_BYTES_IMAGE: String(200 * 1024) })
  const account = await createUser(app)
  const headers = bearer((await login(app, account.email!)).access_token)
  const send = async (file: Buffer, name: string, type = 'image/png') => {
    const body = await form(file, name, type)
    return app.inject({ method: 'POST', url: pictureUrl, payload: body.payload, headers: { ...headers, ...body.headers } })
  }
  const htmlPng = await send(html(), 'avatar.png')
  t.equal(htmlPng.statusCode, 415)
  t.equal(htmlPng.json().error.code, 'FILE_TYPE_NOT_ALLOWED')
  const document = await send(pdf(), 'avatar.png')
  t.equal(document.statusCode, 415, 'a PDF is an allowed upload, but not a picture')
  t.equal(document.json().error.details.detected, 'application/pdf')

  const pngHeader = (await png()).subarray(0, 64)
  const corrupt = await send(Buffer.concat([pngHeader, randomBytes(2000)]), 'broken.png')
  t.equal(corrupt.statusCode, 415, 'a file that looks like a PNG but does not decode is refused, not a 500')
  t.equal(corrupt.json().error.code, 'FILE_TYPE_NOT_ALLOWED')

  const noise = await sharp(randomBytes(400 * 400 * 3), { raw: { width: 400, height: 400, channels: 3 } }).png().toBuffer()
  t.ok(noise.length > 200 * 1024)
  const big = await send(noise, 'noise.png')
  t.equal(big.statusCode, 413)
  t.equal(big.json().error.code, 'FILE_TOO_LARGE')

  const json = await app.inject({ method: 'POST', url: pictureUrl, headers, payload: { url: 'https://example.com/me.png' } })
  t.equal(json.statusCode, 415)
  t.equal(json.json().error.code, 'UNSUPPORTED_MEDIA_TYPE')
  const [row] = await app.db.select().from(user).where(eq(user.user_id, account.user_id))
  t.equal(row.profile_picture_key, null, 'nothing was set')
  t.equal((await app.db.select().from(media).where(eq(media.user_id, account.user_id))).length, 0)
})
