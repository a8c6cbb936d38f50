import { spawn, type ChildProcess } from 'node:child_process'
import net from 'node:net'
import { Redis } from 'ioredis'

async function freePort (): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })
}

/**
 * A private redis-server on a loopback port, for tests that FLUSHALL, stop or
 * restart "the" Redis without touching the shared one other test files use.
 */
export class PrivateRedis {
  port = 0
  private child?: ChildProcess

  get url () { return `redis://127.0.0.1:${this.port}` }

  async start () {
    if (this.port === 0) this.port = await freePort()
    this.child = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' })
    for (let i = 0; i < 100; i++) {
      const client = new Redis(this.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
      try {
        await client.connect()
        await client.ping()
        return
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 50))
      } finally {
        client.disconnect()
      }
    }
    throw new Error('redis-server did not start')
  }

  async flushAll () {
    const client = new Redis(this.url)
    try { await client.flushall() } finally { client.disconnect() }
  }

  async stop () {
    const child = this.child
    // A killed child has a signalCode and no exitCode: a second stop() must not wait for an exit that already happened.
    if (!child || child.exitCode !== null || child.signalCode !== null) return
    await new Promise<void>((resolve) => { child.once('exit', () => resolve()); child.kill('SIGKILL') })
  }
}
