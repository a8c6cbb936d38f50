import t from 'tap'
import { Writable } from 'node:stream'
import pino from 'pino'
import type { FastifyBaseLogger } from 'fastify'
import { build } from '../helpers/build.ts'
import { lazyChildLogger } from '../../plugins/app/http/lazy-logger.ts'
import { redactPaths } from '../../plugins/app/http/redact.ts'

function capture () {
  const lines: Array<Record<string, unknown>> = []
  const stream = new Writable({ write (chunk, _encoding, done) { lines.push(JSON.parse(String(chunk))); done() } })
  return { lines, stream }
}

t.test('a request logger is made on first use, with the request id, at the route\'s level', async (t) => {
  const { lines, stream } = capture()
  let children = 0
  const root = pino({ level: 'warn', onChild: () => { children++ } }, stream) as unknown as FastifyBaseLogger

  const quiet = lazyChildLogger(root, { reqId: 'r-1' }, {})
  quiet.info('incoming request')
  quiet.debug('details')
  t.equal(children, 0, 'nothing logged at a disabled level: no child made')
  t.equal(quiet.level, 'warn')
  t.notOk((quiet as unknown as { isLevelEnabled: (l: string) => boolean }).isLevelEnabled('info'))
  quiet.warn({ detail: 1 }, 'first')
  quiet.error('second')
  t.equal(children, 1, 'one child, on the first enabled call')
  t.same(lines.map((l) => [l.reqId, l.msg]), [['r-1', 'first'], ['r-1', 'second']])

  lines.length = 0
  const strict = lazyChildLogger(root, { reqId: 'r-2' }, { level: 'error' })
  strict.warn('dropped')
  strict.error('kept')
  t.same(lines.map((l) => [l.reqId, l.msg, l.level]), [['r-2', 'kept', 50]], 'a route-level level applies')
  t.equal(strict.child({ extra: true }).level, 'error', 'children of it inherit its level')
})

t.test('request logs carry the request id and never a credential (SR-15)', async (t) => {
  const { lines, stream } = capture()
  const app = await build(t, {}, { serverOptions: { logger: { level: 'info', redact: { paths: redactPaths, censor: '[redacted]' }, stream } } })
  const res = await app.inject({ url: '/api/v1/settings/profile', headers: { authorization: 'Bearer secret-bearer-value', 'x-request-id': 'log-test-0001' } })
  t.equal(res.statusCode, 401)
  const mine = lines.filter((l) => l.reqId === 'log-test-0001')
  t.ok(mine.some((l) => l.msg === 'incoming request'), 'incoming request logged')
  t.ok(mine.some((l) => l.msg === 'request completed'), 'request completed logged')
  t.notMatch(JSON.stringify(lines), /secret-bearer-value/, 'the bearer token appears nowhere')
})
