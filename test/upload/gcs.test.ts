import t, { type Test } from 'tap'
import { generateKeyPair } from 'node:crypto'
import { promisify } from 'node:util'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { eq } from 'drizzle-orm'
import { buildContext } from '../helpers/build.ts'
import { bearer, createUser, login } from '../helpers/users.ts'
import { startFakeGcs } from '../helpers/gcs.ts'
import { media } from '../../db/schema/index.ts'
import { form, jpegWithGps, png } from './samples.ts'

// The GCS library must never look for a metadata server (169.254.169.254) from a test.
process.env.METADATA_SERVER_DETECTION = 'none'

/** A service-account key file (its own RSA key) so the library signs URLs offline. */
async function credentialsFile (t: Test) {
  const dir = mkdtempSync(path.join(tmpdir(), 'gcs-key-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const { privateKey } = await promisify(generateKeyPair)('rsa', { modulusLength: 2048 })
  const file = path.join(dir, 'key.json')
  writeFileSync(file, JSON.stringify({
    type: 'service_account',
    project_id: 'test-project',
    private_key_id: 'k1',
    private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }),
    client_email: 'api@test-project.iam.gserviceaccount.com',
    client_id: '1',
    token_uri: 'http://127.0.0.1:9/token'
  }))
  return file
}

t.test('STORAGE_DRIVER=gcs: uploads, signed URLs, health, deletes (and their failures) through the JSON API', async (t) => {
  const gcs = await startFakeGcs('app-bucket')
  t.teardown(() => gcs.close())
  process.env.GOOGLE_APPLICATION_CREDENTIALS = await credentialsFile(t)
  // The app's clock runs ahead on demand: the storage probe's result is kept for STORAGE_HEALTH_CACHE_SECONDS.
  let ahead = 0
  const ctx = await buildContext(t, { STORAGE_DRIVER: 'gcs', GOOGLE_STORAGE_BUCKET_NAME: 'app-bucket', GCS_API_ENDPOINT: gcs.url, STORAGE_SIGNED_URL_TTL_SECONDS: '900' }, { now: () => Date.now() + ahead })
  const { app } = ctx
  const account = await createUser(app)
  const headers = bearer((await login(app, account.email!)).access_token)
  const upload = async (file: Buffer, name: string, url = '/api/v1/upload/media') => {
    const body = await form(file, name)
    return app.inject({ method: 'POST', url, payload: body.payload, headers: { ...headers, ...body.headers } })
  }

  const health = await app.inject({ method: 'GET', url: '/api/v1/health/storage' })
  t.equal(health.statusCode, 200)
  t.match(health.json().data, { status: 'up', driver: 'gcs' })

  const image = await png()
  const res = await upload(image, 'x.png')
  t.equal(res.statusCode, 201, res.body.slice(0, 300))
  const data = res.json().data
  t.equal(data.storage_driver, 'gcs')
  const [row] = await app.db.select().from(media).where(eq(media.media_id, data.file_id))
  const stored = gcs.objects.get(row.object_key)
  t.ok(stored?.data.equals(image), 'the bucket holds the bytes under the server-made key')
  t.equal(stored?.contentType, 'image/png', 'with the detected content type')
  const signed = new URL(data.url)
  t.equal(signed.origin, gcs.url, 'clients download straight from the bucket')
  t.equal(signed.searchParams.get('X-Goog-Expires'), '900')
  t.ok(signed.searchParams.get('X-Goog-Signature'), 'a V4 signed URL')
  t.ok(data.url_expires_at)

  const listed = await app.inject({ method: 'GET', url: '/api/v1/upload/media', headers })
  t.match(listed.json().data[0].url, /X-Goog-Signature=/)

  gcs.failNext('DELETE', 403)
  const refused = await app.inject({ method: 'DELETE', url: `/api/v1/upload/media/${data.file_id}`, headers })
  t.equal(refused.statusCode, 502, 'a storage failure is reported')
  t.equal(refused.json().error.code, 'STORAGE_ERROR')
  t.ok(gcs.objects.has(row.object_key), 'object kept')
  t.equal((await app.db.select().from(media).where(eq(media.media_id, data.file_id))).length, 1, 'row kept')

  const deleted = await app.inject({ method: 'DELETE', url: `/api/v1/upload/media/${data.file_id}`, headers })
  t.equal(deleted.statusCode, 200)
  t.notOk(gcs.objects.has(row.object_key), 'object deleted in the bucket')
  t.equal((await app.db.select().from(media).where(eq(media.media_id, data.file_id))).length, 0, 'row deleted')

  const picture = await upload(await jpegWithGps(200, 100), 'me.jpg', '/api/v1/settings/profile-picture')
  t.equal(picture.statusCode, 200, picture.body.slice(0, 300))
  const pictureUrl = picture.json().data.profile_picture_url
  t.match(pictureUrl, /^\/api\/v1\/upload\/files\/profile-pictures\//, 'a stable URL is kept in the profile')
  const redirect = await app.inject({ method: 'GET', url: pictureUrl })
  t.equal(redirect.statusCode, 302, 'which sends the client on to a fresh signed URL')
  t.match(redirect.headers.location, new RegExp(`^${gcs.url}/app-bucket/profile-pictures/.+X-Goog-Signature=`))
  t.equal([...gcs.objects.keys()].filter((k) => k.startsWith('profile-pictures/')).length, 2, 'picture and thumbnail in the bucket')

  gcs.failNext('GET', 403)
  ahead += 30_000
  const down = await app.inject({ method: 'GET', url: '/api/v1/health/storage' })
  t.equal(down.statusCode, 503, 'health fails when the bucket refuses us')

  const publicUrls = await ctx.another({ GCS_PUBLIC_URLS: 'true' })
  const publicBody = await form(image, 'y.png')
  const publicRes = await publicUrls.inject({ method: 'POST', url: '/api/v1/upload/media', payload: publicBody.payload, headers: { ...headers, ...publicBody.headers } })
  t.equal(publicRes.statusCode, 201)
  t.match(publicRes.json().data.url, new RegExp(`^${gcs.url}/app-bucket/media%2F[0-9a-f-]{36}\\.png$`), 'GCS_PUBLIC_URLS: the public object URL')
  t.equal(publicRes.json().data.url_expires_at, null)
})
