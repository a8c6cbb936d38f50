import t from 'tap'
import { generateKeyPairSync, randomUUID } from 'node:crypto'
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Readable } from 'node:stream'
import { localDriver } from '../../plugins/app/media/storage/local.ts'
import { gcsDriver } from '../../plugins/app/media/storage/gcs.ts'
import { isObjectKey } from '../../plugins/app/media/storage/driver.ts'
import { startFakeGcs } from '../helpers/gcs.ts'

// The GCS library must never look for a metadata server (169.254.169.254) from a test.
process.env.METADATA_SERVER_DETECTION = 'none'

const read = async (stream: Readable) => {
  const chunks: Buffer[] = []
  for await (const chunk of stream) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}

const key = (folder = 'media', ext = 'png') => `${folder}/${randomUUID()}.${ext}`

t.test('SR-37: object keys are server-shaped; anything else is refused by the drivers', async (t) => {
  t.ok(isObjectKey(key()))
  t.ok(isObjectKey(`profile-pictures/${randomUUID()}_thumb.webp`))
  for (const bad of ['../etc/passwd', 'media/../../x.png', 'media/evil.png', '/media/x.png', `media/${randomUUID()}.png/..`, `other/${randomUUID()}.png`, `media/${randomUUID()}.PNG`, `media\\${randomUUID()}.png`]) {
    t.notOk(isObjectKey(bad), bad)
  }
  const root = mkdtempSync(path.join(tmpdir(), 'storage-'))
  t.teardown(() => rmSync(root, { recursive: true, force: true }))
  const driver = localDriver(root)
  await t.rejects(driver.put('../escape.png', Readable.from([Buffer.from('x')]), { contentType: 'image/png' }))
  await t.rejects(driver.delete('media/../../secret'))
  t.notOk(existsSync(path.join(root, '..', 'escape.png')))
})

t.test('local driver: put, read, delete; a failed stream leaves no object and no partial file', async (t) => {
  const root = mkdtempSync(path.join(tmpdir(), 'storage-'))
  t.teardown(() => rmSync(root, { recursive: true, force: true }))
  const driver = localDriver(root)
  await driver.check()
  const k = key()
  await driver.put(k, Readable.from([Buffer.from('hello '), Buffer.from('world')]), { contentType: 'image/png' })
  const stored = await driver.read(k)
  t.equal(stored?.size, 11)
  t.equal((await read(stored!.stream)).toString(), 'hello world')
  t.equal(await driver.directUrl(k, Date.now() + 1000), undefined, 'the API serves local files itself')
  t.equal(await driver.delete(k), true)
  t.equal(await driver.delete(k), false, 'a second delete finds nothing')
  t.equal(await driver.read(k), undefined)

  const broken = key()
  async function * failing () {
    yield Buffer.from('partial')
    throw new Error('client went away')
  }
  await t.rejects(driver.put(broken, Readable.from(failing()), { contentType: 'image/png' }), /client went away/)
  t.equal(await driver.read(broken), undefined, 'no object under the key')
  t.same(readdirSync(path.join(root, '.tmp')), [], 'no partial file left behind')
})

t.test('GCS driver against a local JSON API: upload, metadata, download, delete, health, public URLs', async (t) => {
  const gcs = await startFakeGcs('media-bucket')
  t.teardown(() => gcs.close())
  const driver = await gcsDriver({ bucket: 'media-bucket', apiEndpoint: gcs.url, publicUrls: true })
  await driver.check()
  t.match(gcs.requests.at(-1), { method: 'GET', path: '/storage/v1/b/media-bucket/o/health%2Fprobe' }, 'health reads object metadata (404 = reachable)')

  const k = key('media', 'pdf')
  const content = Buffer.concat([Buffer.from('%PDF-1.4\n'), Buffer.alloc(200_000, 7)])
  await driver.put(k, Readable.from([content.subarray(0, 70_000), content.subarray(70_000)]), { contentType: 'application/pdf' })
  t.match(gcs.requests.at(-1), { method: 'POST', path: '/upload/storage/v1/b/media-bucket/o' })
  const object = gcs.objects.get(k)
  t.ok(object, 'the object is stored under the server-made key')
  t.equal(object?.contentType, 'application/pdf')
  t.ok(object?.data.equals(content), 'byte for byte (the library checked the MD5 the server returned)')

  const downloaded = await driver.read(k)
  t.equal(downloaded?.size, content.length)
  t.ok((await read(downloaded!.stream)).equals(content))
  t.equal(await driver.directUrl(k, Date.now() + 60_000), `${gcs.url}/media-bucket/${encodeURIComponent(k)}`, 'public URL mode')

  await t.rejects(driver.put(k, Readable.from([Buffer.from('again')]), { contentType: 'application/pdf' }), 'an existing object is never overwritten (ifGenerationMatch=0)')
  t.ok(gcs.objects.get(k)?.data.equals(content))

  t.equal(await driver.delete(k), true)
  t.notOk(gcs.objects.has(k))
  t.equal(await driver.delete(k), false, 'already gone is not a failure')
  t.equal(await driver.read(k), undefined)

  gcs.failNext('DELETE', 403)
  const other = key()
  await driver.put(other, Readable.from([Buffer.from('x')]), { contentType: 'image/png' })
  await t.rejects(driver.delete(other), 'a refused delete is an error, not "already gone"')
  t.ok(gcs.objects.has(other))

  await gcs.close()
  await t.rejects(driver.check(), 'health fails when the endpoint is down')
})

t.test('GCS driver: V4 signed URLs made with the credentials file, without any network call', async (t) => {
  const gcs = await startFakeGcs('signed-bucket')
  t.teardown(() => gcs.close())
  const dir = mkdtempSync(path.join(tmpdir(), 'gcs-key-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const keyFile = path.join(dir, 'service-account.json')
  writeFileSync(keyFile, JSON.stringify({
    type: 'service_account',
    project_id: 'test-project',
    private_key_id: 'test',
    private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }),
    client_email: 'uploader@test-project.iam.gserviceaccount.com',
    client_id: '1',
    token_uri: 'http://127.0.0.1:9/token'
  }))
  const previous = process.env.GOOGLE_APPLICATION_CREDENTIALS
  process.env.GOOGLE_APPLICATION_CREDENTIALS = keyFile
  t.teardown(() => { if (previous === undefined) delete process.env.GOOGLE_APPLICATION_CREDENTIALS; else process.env.GOOGLE_APPLICATION_CREDENTIALS = previous })

  const driver = await gcsDriver({ bucket: 'signed-bucket', apiEndpoint: gcs.url, publicUrls: false })
  const k = key()
  const before = gcs.requests.length
  const signed = new URL((await driver.directUrl(k, Date.now() + 15 * 60_000))!)
  t.equal(signed.searchParams.get('X-Goog-Algorithm'), 'GOOG4-RSA-SHA256')
  t.equal(signed.searchParams.get('X-Goog-Expires'), String(15 * 60))
  t.match(signed.searchParams.get('X-Goog-Credential'), /^uploader@test-project\.iam\.gserviceaccount\.com\//)
  t.match(signed.searchParams.get('X-Goog-Signature'), /^[0-9a-f]{512}$/)
  t.ok(signed.pathname.endsWith(k), 'the URL names the object')
  t.equal(gcs.requests.length, before, 'signing talks to no server')
})
