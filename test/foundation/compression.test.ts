import t from 'tap'
import { brotliDecompressSync, gunzipSync, gzipSync } from 'node:zlib'
import { build } from '../helpers/build.ts'

t.test('large answers are compressed for clients that accept it, small ones are not', async (t) => {
  const app = await build(t)
  const plain = await app.inject({ url: '/api-docs/json' })
  t.ok(plain.rawPayload.length > 2048, 'the OpenAPI document is over the threshold')
  t.notOk(plain.headers['content-encoding'], 'no encoding without Accept-Encoding')

  const gzip = await app.inject({ url: '/api-docs/json', headers: { 'accept-encoding': 'gzip' } })
  t.equal(gzip.headers['content-encoding'], 'gzip')
  t.same(JSON.parse(gunzipSync(gzip.rawPayload).toString('utf8')), plain.json(), 'gzip decodes to the same document')

  const br = await app.inject({ url: '/api-docs/json', headers: { 'accept-encoding': 'br, gzip' } })
  t.equal(br.headers['content-encoding'], 'br', 'brotli preferred')
  t.same(JSON.parse(brotliDecompressSync(br.rawPayload).toString('utf8')), plain.json())

  for (const url of ['/health', '/api/v1/health', '/api/v1/settings/profile']) {
    const small = await app.inject({ url, headers: { 'accept-encoding': 'gzip, br' } })
    t.notOk(small.headers['content-encoding'], `${url}: a small answer is sent as it is`)
    t.equal(small.json().success, small.statusCode === 200, `${url}: readable JSON`)
  }
})

t.test('compressed request bodies are decompressed; bad ones are a clear 4xx, never a 500', async (t) => {
  const app = await build(t)
  const body = JSON.stringify({ identifier: 'nobody@example.com', password: 'not the password at all' })
  const url = '/api/v1/auth/login-with-password'

  const gz = await app.inject({ method: 'POST', url, headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' }, payload: gzipSync(body) })
  t.equal(gz.statusCode, 401, 'the gzip body was read: the credentials were checked')
  t.equal(gz.json().error.code, 'AUTH_INVALID_CREDENTIALS')

  const broken = await app.inject({ method: 'POST', url, headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' }, payload: Buffer.from('not gzip at all') })
  t.ok(broken.statusCode >= 400 && broken.statusCode < 500, `broken gzip: ${broken.statusCode}`)
  t.equal(broken.json().success, false)

  const unknown = await app.inject({ method: 'POST', url, headers: { 'content-type': 'application/json', 'content-encoding': 'compress' }, payload: body })
  t.equal(unknown.statusCode, 415, 'an encoding the server does not speak')
  t.equal(unknown.json().error.code, 'UNSUPPORTED_CONTENT_ENCODING')

  const get = await app.inject({ url: '/health', headers: { 'content-encoding': 'gzip' } })
  t.equal(get.statusCode, 200, 'a GET is not decompressed (it has no body)')
})
