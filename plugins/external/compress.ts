import fp from 'fastify-plugin'
import compress from '@fastify/compress'

/** Compression only where it pays: small JSON answers are sent as they are. */
export default fp(async (fastify) => {
  await fastify.register(compress, { global: true, threshold: 2048, encodings: ['br', 'gzip', 'deflate'], brotliOptions: { params: { 1: 4 } } })
}, { name: 'compress' })
