import t, { type Test } from 'tap'
import type { AddressInfo } from 'node:net'
import { build } from '../helpers/build.ts'
import { securityHeaders } from '../../plugins/external/helmet.ts'
import { rawRequest, type RawAnswer } from '../fuzz/socket.ts'

/**
 * The router's and Node's own refusals (SR-31, SR-33): a URL that is not valid
 * percent-encoding, a path parameter over the router's limit, headers over
 * Node's size limit and requests Node cannot parse all answer in the error
 * envelope, with a request id and the security headers. Sent over a real
 * socket: inject bypasses Node's HTTP parser.
 */
const expectedHeaders = securityHeaders()

function inEnvelope (t: Test, answer: RawAnswer, status: number, code: string) {
  t.equal(answer.status, status, answer.body.slice(0, 300))
  const body = JSON.parse(answer.body)
  t.equal(body.success, false)
  t.equal(body.error.code, code)
  t.type(body.error.message, 'string')
  t.ok(body.error.id, 'a request id in the body')
  t.equal(answer.headers['x-request-id'], body.error.id, 'and the same in X-Request-Id')
  for (const [name, value] of Object.entries(expectedHeaders)) t.equal(answer.headers[name], value, name)
  t.equal(answer.headers['cache-control'], 'no-store')
}

t.test('SR-31/SR-33: framework and Node-level refusals in the envelope with the security headers', async (t) => {
  const app = await build(t)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as AddressInfo
  const get = (path: string, extra = '') => rawRequest(port, `GET ${path} HTTP/1.1\r\nHost: localhost\r\n${extra}Connection: close\r\n\r\n`)

  t.test('a path parameter over the router limit (was Fastify\'s 414 JSON)', async (t) => {
    inEnvelope(t, await get(`/api/v1/permissions/${'x'.repeat(300)}`), 400, 'VALIDATION_ERROR')
    const injected = await app.inject({ url: `/api/v1/groups/${'y'.repeat(256)}` })
    inEnvelope(t, { status: injected.statusCode, headers: injected.headers as Record<string, string>, body: injected.body }, 400, 'VALIDATION_ERROR')
  })

  t.test('a URL that is not valid percent-encoding (was the raw FST_ERR_BAD_URL)', async (t) => {
    inEnvelope(t, await get('/api/v1/permissions/%E0%A4%A'), 400, 'BAD_REQUEST')
    const french = await get('/api/v1/permissions/%E0%A4%A', 'Accept-Language: fr\r\n')
    t.equal(french.headers['content-language'], 'fr')
    t.not(JSON.parse(french.body).error.message, JSON.parse((await get('/api/v1/permissions/%E0%A4%A')).body).error.message, 'translated')
  })

  t.test('headers over Node\'s size limit: 431', async (t) => {
    inEnvelope(t, await get('/health', `X-Big: ${'b'.repeat(20_000)}\r\n`), 431, 'BAD_REQUEST')
  })

  t.test('a request Node cannot parse: 400', async (t) => {
    inEnvelope(t, await rawRequest(port, 'THIS IS NOT HTTP\r\n\r\n'), 400, 'BAD_REQUEST')
    inEnvelope(t, await rawRequest(port, 'GET / HTTP/1.1\r\nHost: x\r\nBad Header Name: 1\r\n\r\n'), 400, 'BAD_REQUEST')
  })

  t.test('the server still answers afterwards', async (t) => {
    t.equal((await get('/health')).status, 200)
  })
})
