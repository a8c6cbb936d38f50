import fp from 'fastify-plugin'
import compress from '@fastify/compress'

const bodiless = new Set(['GET', 'HEAD'])

/**
 * Compression only where it pays: small JSON answers are sent as they are.
 * Routes that take no body (GET, HEAD) get no decompression hook: it would only
 * look for a Content-Encoding on every request. A route whose answer is always
 * tiny (the probes) opts out of compression with `compress: false`.
 */
export default fp(async (fastify) => {
  fastify.addHook('onRoute', (route) => {
    const methods = [route.method].flat()
    if (methods.every((method) => bodiless.has(method))) route.decompress ??= false
  })
  await fastify.register(compress, { global: true, threshold: 2048, encodings: ['br', 'gzip', 'deflate'], brotliOptions: { params: { 1: 4 } } })
}, { name: 'compress' })
