import net from 'node:net'

/**
 * A TCP proxy on loopback in front of a real service (PostgreSQL, Redis), so a
 * test can take "the database" down and bring it back without stopping the
 * shared server other test files are using.
 */
export class TcpProxy {
  private server?: net.Server
  private readonly sockets = new Set<net.Socket>()
  private cutWhen?: (chunk: Buffer) => boolean
  port = 0

  constructor (private readonly targetPort: number, private readonly targetHost = '127.0.0.1') {}

  async start (): Promise<number> {
    this.server = net.createServer((client) => {
      const upstream = net.connect(this.targetPort, this.targetHost)
      for (const s of [client, upstream]) {
        this.sockets.add(s)
        s.on('close', () => this.sockets.delete(s))
        s.on('error', () => { client.destroy(); upstream.destroy() })
      }
      upstream.pipe(client)
      client.on('data', (chunk: Buffer) => {
        if (this.cutWhen?.(chunk)) {
          this.cutWhen = undefined
          this.stop().catch(() => {})
          return
        }
        if (!upstream.write(chunk)) client.pause()
      })
      upstream.on('drain', () => client.resume())
      client.on('end', () => upstream.end())
    })
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject)
      this.server!.listen(this.port, '127.0.0.1', () => resolve())
    })
    this.port = (this.server.address() as net.AddressInfo).port
    return this.port
  }

  /**
   * The next client chunk for which `match` is true is not forwarded: the proxy
   * stops there instead (a server going away at that exact point of a protocol).
   */
  cutAt (match: (chunk: Buffer) => boolean) { this.cutWhen = match }

  /** Cuts every connection and refuses new ones, like a crashed server. */
  async stop (): Promise<void> {
    for (const s of this.sockets) s.destroy()
    this.sockets.clear()
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()))
    this.server = undefined
  }
}
