import { connect } from 'node:net'

/** Raw HTTP over a real socket, for what app.inject cannot send (it bypasses Node's HTTP parser). */
export interface RawAnswer { status: number, headers: Record<string, string>, body: string }

/** Sends `request` as raw bytes and reads the answer until the server closes the connection (or 5 s pass). */
export function rawRequest (port: number, request: string | Buffer): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    const chunks: Buffer[] = []
    const timer = setTimeout(() => socket.destroy(), 5000)
    socket.on('data', (chunk) => {
      chunks.push(chunk)
      // One answer is enough: stop at the end of a body whose length is known.
      const text = Buffer.concat(chunks).toString('utf8')
      const end = text.indexOf('\r\n\r\n')
      const length = /\r\ncontent-length: *(\d+)/i.exec(text.slice(0, end))
      if (end !== -1 && length && Buffer.byteLength(text.slice(end + 4)) >= Number(length[1])) socket.destroy()
    })
    socket.on('error', () => socket.destroy())
    socket.on('close', () => {
      clearTimeout(timer)
      const text = Buffer.concat(chunks).toString('utf8')
      const end = text.indexOf('\r\n\r\n')
      if (end === -1) return reject(new Error(`no HTTP answer: ${JSON.stringify(text)}`))
      const [statusLine, ...lines] = text.slice(0, end).split('\r\n')
      const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]))
      resolve({ status: Number(statusLine.split(' ')[1]), headers, body: text.slice(end + 4) })
    })
    socket.write(request)
  })
}
