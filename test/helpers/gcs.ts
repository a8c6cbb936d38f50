import { createHash } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

/**
 * A local stand-in for the Cloud Storage JSON API, covering the calls the GCS
 * driver makes: multipart upload, object metadata, object download, delete.
 * It listens on 127.0.0.1 only; point GCS_API_ENDPOINT at `url`.
 */
export interface FakeObject { data: Buffer, contentType: string, md5Hash: string, generation: string }

export interface FakeGcs {
  url: string
  bucket: string
  objects: Map<string, FakeObject>
  requests: Array<{ method: string, path: string }>
  /** The next request with this method is answered with this status (a JSON error body). */
  failNext: (method: string, status: number) => void
  close: () => Promise<void>
}

const readBody = async (req: IncomingMessage) => {
  const chunks: Buffer[] = []
  for await (const chunk of req) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}

/** Splits a multipart/related body (metadata JSON, then the media) as the JSON API defines it. */
function parseMultipartRelated (body: Buffer, contentType: string): { metadata: Record<string, unknown>, media: Buffer, mediaType: string } {
  const boundary = /boundary="?([^";]+)"?/.exec(contentType)?.[1]
  if (!boundary) throw new Error('no boundary')
  const delimiter = Buffer.from(`--${boundary}`)
  const parts: Buffer[] = []
  let start = body.indexOf(delimiter)
  while (start !== -1) {
    const next = body.indexOf(delimiter, start + delimiter.length)
    if (next === -1) break
    parts.push(body.subarray(start + delimiter.length, next))
    start = next
  }
  const split = (part: Buffer) => {
    const headerEnd = part.indexOf('\r\n\r\n')
    const headers = part.subarray(0, headerEnd).toString('utf8')
    let content = part.subarray(headerEnd + 4)
    if (content.subarray(-2).toString() === '\r\n') content = content.subarray(0, -2)
    return { headers, content }
  }
  const [meta, media] = parts.map(split)
  return {
    metadata: JSON.parse(meta.content.toString('utf8')) as Record<string, unknown>,
    media: media.content,
    mediaType: /content-type:\s*([^\r\n]+)/i.exec(media.headers)?.[1] ?? 'application/octet-stream'
  }
}

export async function startFakeGcs (bucket = 'test-bucket'): Promise<FakeGcs> {
  const objects = new Map<string, FakeObject>()
  const requests: FakeGcs['requests'] = []
  const failures = new Map<string, number>()
  let generation = 1

  const json = (res: ServerResponse, status: number, body?: unknown) => {
    if (body === undefined) {
      res.writeHead(status).end()
      return
    }
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body))
  }
  const error = (res: ServerResponse, status: number, message: string) => json(res, status, { error: { code: status, message, errors: [{ message, reason: status === 404 ? 'notFound' : 'forbidden' }] } })
  const resource = (name: string, o: FakeObject) => ({
    kind: 'storage#object',
    bucket,
    name,
    id: `${bucket}/${name}/${o.generation}`,
    generation: o.generation,
    size: String(o.data.length),
    contentType: o.contentType,
    md5Hash: o.md5Hash
  })

  const server = createServer((req, res) => {
    // One request per connection: a kept-alive socket that the server closes while the
    // client picks it for the next upload would fail that upload at random.
    res.shouldKeepAlive = false
    const url = new URL(req.url ?? '/', 'http://fake')
    requests.push({ method: req.method ?? 'GET', path: url.pathname })
    const failure = failures.get(req.method ?? '')
    if (failure !== undefined) {
      failures.delete(req.method ?? '')
      req.resume()
      error(res, failure, 'injected failure')
      return
    }
    const upload = new RegExp(`^/upload/storage/v1/b/${bucket}/o$`).exec(url.pathname)
    const object = new RegExp(`^/storage/v1/b/${bucket}/o/(.+)$`).exec(url.pathname)
    if (upload && req.method === 'POST') {
      readBody(req).then((body) => {
        const { metadata, media, mediaType } = parseMultipartRelated(body, req.headers['content-type'] ?? '')
        const name = url.searchParams.get('name') ?? String(metadata.name ?? '')
        if (!name) return error(res, 400, 'no object name')
        if (url.searchParams.get('ifGenerationMatch') === '0' && objects.has(name)) return error(res, 412, 'precondition failed')
        const stored: FakeObject = {
          data: media,
          contentType: String(metadata.contentType ?? mediaType),
          md5Hash: createHash('md5').update(media).digest('base64'),
          generation: String(generation++)
        }
        objects.set(name, stored)
        json(res, 200, resource(name, stored))
      }).catch(() => error(res, 400, 'bad upload'))
      return
    }
    if (object) {
      req.resume()
      const name = decodeURIComponent(object[1])
      const found = objects.get(name)
      if (req.method === 'DELETE') {
        if (!found) return error(res, 404, 'No such object')
        objects.delete(name)
        return json(res, 204)
      }
      if (req.method === 'GET') {
        if (!found) return error(res, 404, 'No such object')
        if (url.searchParams.get('alt') === 'media') {
          res.writeHead(200, { 'content-type': found.contentType, 'content-length': found.data.length }).end(found.data)
          return
        }
        return json(res, 200, resource(name, found))
      }
    }
    req.resume()
    error(res, 404, `fake GCS does not implement ${req.method} ${url.pathname}`)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    bucket,
    objects,
    requests,
    failNext: (method, status) => { failures.set(method, status) },
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    })
  }
}
