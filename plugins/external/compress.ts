import fp from 'fastify-plugin'
import compress from '@fastify/compress'
import { AppError } from '../../schemas/errors.ts'

const bodiless = new Set(['GET', 'HEAD'])
const encodings = ['br', 'gzip', 'deflate'] as const

/**
 * Compression only where it pays: small JSON answers are sent as they are.
 * Routes that take no body (GET, HEAD) get no decompression hook: it would only
 * look for a Content-Encoding on every request. A route whose answer is always
 * tiny (the probes) opts out of compression with `compress: false`.
 * A request body in another encoding (zstd, compress, ...) is a 415
 * UNSUPPORTED_CONTENT_ENCODING naming it and the accepted ones.
 */
export default fp(async (fastify) => {
  fastify.addHook('onRoute', (route) => {
    const methods = [route.method].flat()
    if (methods.every((method) => bodiless.has(method))) route.decompress ??= false
  })
  await fastify.register(compress, {
    global: true,
    threshold: 2048,
    encodings: [...encodings],
    // The same request encodings on every Node line (zlib has zstd from Node 22.15 on).
    requestEncodings: [...encodings],
    brotliOptions: { params: { 1: 4 } },
    onUnsupportedRequestEncoding: (encoding) => new AppError('UNSUPPORTED_CONTENT_ENCODING', { details: { encoding, accepted: ['identity', ...encodings] } })
  })
}, { name: 'compress' })
