import t from 'tap'
import { Writable } from 'node:stream'
import type { FastifyServerOptions } from 'fastify'
import { build, testSecret } from '../helpers/build.ts'
import { serverOptions } from '../../plugins/app/http/server-options.ts'
import { loadConfig } from '../../config.ts'
import { redactUrl } from '../../plugins/app/http/redact.ts'
import { scrubBreadcrumb, scrubEvent } from '../../plugins/external/sentry.ts'

/**
 * SR-15 / SR-33: a token sent in the query string (refused by the API, SR-17,
 * but still logged) and the signature of a download link never reach the logs
 * or an error report. The app runs with the logger options the server uses
 * (serverOptions), only pointed at a captured stream at level info.
 */
function capture () {
  const lines: string[] = []
  const stream = new Writable({ write (chunk, _encoding, done) { lines.push(String(chunk)); done() } })
  return { lines, stream }
}

async function loggedApp (t: Parameters<typeof build>[0]) {
  const { lines, stream } = capture()
  const logger = { ...(serverOptions(loadConfig({ JWT_SECRET_KEY: testSecret })).logger as object), level: 'info', stream }
  const app = await build(t, {}, { serverOptions: { logger } as Partial<FastifyServerOptions> })
  return { app, lines }
}

t.test('SR-15: ?access_token= is logged as [redacted], the rest of the URL as sent', async (t) => {
  const { app, lines } = await loggedApp(t)
  const token = 'eyJhbGciOiJIUzI1NiJ9.query-token-value-0123456789'
  const res = await app.inject({ url: `/api/v1/settings/profile?lang=fr&access_token=${token}`, headers: { 'x-request-id': 'redact-test-0001' } })
  t.equal(res.statusCode, 401, 'a token in the query string is refused')
  const mine = lines.filter((l) => l.includes('redact-test-0001'))
  t.ok(mine.some((l) => l.includes('incoming request')), 'the request was logged')
  t.notMatch(lines.join('\n'), /query-token-value/, 'the token appears in no log line')
  t.ok(mine.some((l) => l.includes('/api/v1/settings/profile?lang=fr&access_token=[redacted]')), 'the path and other parameters are kept')
})

t.test('SR-15: a download link\'s signature and encoded key names are redacted too', async (t) => {
  const { app, lines } = await loggedApp(t)
  const signature = 'c2lnbmF0dXJlLXZhbHVlLXRoYXQtbXVzdC1ub3QtbGVhaw'
  const signed = await app.inject({ url: `/api/v1/upload/files/media/00000000-0000-4000-8000-000000000000.png?expires=4102444800&signature=${signature}` })
  t.equal(signed.statusCode, 403)
  const encoded = await app.inject({ url: '/api/v1/health?%61ccess_token=encoded-key-secret&session_token=second-secret' })
  t.equal(encoded.statusCode, 200, 'a public route: logged like any other')
  const all = lines.join('\n')
  t.notMatch(all, new RegExp(signature), 'no signature in the logs')
  t.notMatch(all, /encoded-key-secret|second-secret/, 'no token under an encoded or other name')
  t.match(all, /expires=4102444800&signature=\[redacted\]/, 'the expiry stays readable')
})

t.test('redactUrl keeps everything that is not a secret value', async (t) => {
  t.equal(redactUrl('/a/b'), '/a/b')
  t.equal(redactUrl('/a?q=1&page=2'), '/a?q=1&page=2')
  t.equal(redactUrl('/a?token=x&q=1#frag'), '/a?token=[redacted]&q=1#frag')
  t.equal(redactUrl('/a?X-Goog-Signature=abc&X-Goog-Credential=def&X-Goog-Date=1'), '/a?X-Goog-Signature=[redacted]&X-Goog-Credential=[redacted]&X-Goog-Date=1')
  t.equal(redactUrl('/a?refresh_token&jwt=a=b'), '/a?refresh_token=[redacted]&jwt=[redacted]')
  t.equal(redactUrl('/a?%E0%A4%A=1'), '/a?%E0%A4%A=1', 'an undecodable key is compared as sent, not thrown on')
  t.equal(redactUrl(undefined), undefined)
})

t.test('SR-33: error reports carry no query secret in the URL or a breadcrumb', async (t) => {
  const event = scrubEvent({
    type: undefined,
    request: { url: 'https://api.example.com/api/v1/x?access_token=report-secret&page=2', query_string: 'access_token=report-secret', headers: { authorization: 'Bearer report-secret' } },
    breadcrumbs: [{ category: 'http', message: 'GET https://files.example.com/o?X-Goog-Signature=report-secret', data: { url: 'https://files.example.com/o?signature=report-secret', method: 'GET' } }]
  })
  t.notMatch(JSON.stringify(event), /report-secret/)
  t.equal(event.request?.url, 'https://api.example.com/api/v1/x?access_token=[redacted]&page=2')
  t.equal(scrubBreadcrumb({ message: 'plain' }).message, 'plain')
})
