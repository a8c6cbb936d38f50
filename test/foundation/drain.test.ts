import net from 'node:net'
import t from 'tap'
import { drain } from '../../app.ts'
import { loadConfig } from '../../config.ts'
import { build } from '../helpers/build.ts'

/**
 * The lame-duck drain (SR-42) on a listening in-process server: a raw
 * keep-alive socket shows what a client sees at each step.
 */

/** One HTTP/1.1 request on `socket`; resolves with the raw response head and body. */
function send (socket: net.Socket, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let data = ''
    const onData = (chunk: Buffer) => {
      data += chunk.toString()
      const head = data.indexOf('\r\n\r\n')
      const length = /content-length: (\d+)/i.exec(data)
      if (head >= 0 && length && data.length >= head + 4 + Number(length[1])) {
        socket.off('data', onData)
        resolve(data)
      }
    }
    socket.on('data', onData)
    socket.once('error', reject)
    socket.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n`)
  })
}

const connect = (port: number) => new Promise<net.Socket>((resolve, reject) => {
  const socket = net.connect(port, '127.0.0.1', () => resolve(socket))
  socket.once('error', reject)
})

t.test('drain: stops listening, keeps idle connections open and answering with Connection: close, readiness 503', async (t) => {
  const app = await build(t)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as net.AddressInfo
  const idle = await connect(port)
  const active = await connect(port)
  t.teardown(() => { idle.destroy(); active.destroy() })
  t.match(await send(idle, '/health'), /^HTTP\/1\.1 200/, 'both connections served before the drain')
  t.match(await send(active, '/health'), /^HTTP\/1\.1 200/)
  let idleClosed = false
  idle.once('close', () => { idleClosed = true })

  const started = Date.now()
  const drained = drain(app, 1500)
  t.ok(app.lifecycle.draining)
  const refused = await connect(port).then((s) => { s.destroy(); return false }, (error: { code?: string }) => error.code === 'ECONNREFUSED')
  t.ok(refused, 'a new connection is refused at once')

  const ready = await send(active, '/health/ready')
  t.match(ready, /^HTTP\/1\.1 503/, 'readiness answers 503 on an open connection')
  t.match(ready, /connection: close/i, 'with Connection: close')
  t.match(ready, /"draining":true/)
  await new Promise((resolve) => active.once('close', resolve))
  t.pass('the server closed that connection after the answer')

  await new Promise((resolve) => setTimeout(resolve, 300))
  t.notOk(idleClosed, 'a silent connection stays open during the window')
  const late = await send(idle, '/health')
  t.match(late, /^HTTP\/1\.1 200/, 'a request written on it is still answered (liveness stays 200)')
  t.match(late, /connection: close/i, 'telling the client to reconnect elsewhere')

  await drained
  t.ok(Date.now() - started < 1500, `the drain ended as soon as no connection was left (${Date.now() - started} ms)`)
  await app.close()
})

t.test('drain: a connection silent for the whole window is left to close()', async (t) => {
  const app = await build(t)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as net.AddressInfo
  const silent = await connect(port)
  t.teardown(() => silent.destroy())
  const closed = new Promise((resolve) => silent.once('close', resolve))
  const started = Date.now()
  await drain(app, 400)
  t.ok(Date.now() - started >= 400, 'the drain waited for the whole window')
  t.notOk(silent.destroyed, 'without closing the connection')
  await app.close()
  await closed
  t.pass('close() closed it')
})

t.test('SHUTDOWN_DRAIN_MS must be below SHUTDOWN_GRACE_MS', async (t) => {
  t.throws(() => loadConfig({ SHUTDOWN_DRAIN_MS: '10000', SHUTDOWN_GRACE_MS: '10000' }), /SHUTDOWN_DRAIN_MS: must be below SHUTDOWN_GRACE_MS/)
  t.equal(loadConfig({}).SHUTDOWN_DRAIN_MS, 5000)
  t.equal(loadConfig({}).KEEP_ALIVE_TIMEOUT_MS, 72000)
})
