import fp from 'fastify-plugin'
import multipart from '@fastify/multipart'
import { largestUpload } from '../app/media/file-types.ts'

/**
 * Not loaded globally: the routes that take files register it in their own
 * context (routes/api/upload, routes/api/settings/profile-picture.ts). Elsewhere a
 * multipart body is a 415, and the other requests do not pay for its per-request
 * hook (it cleans up temporary files that stream mode never writes).
 */
export const autoload = false

/**
 * multipart/form-data in stream mode: routes read the file part as a stream
 * (`request.file()`), nothing is buffered or written to a temporary folder by
 * the plugin, and fields are not attached to the body. The parser cuts a file
 * one byte past the largest per-type limit, so the upload code (which applies
 * the limit of the detected type) always sees an oversize file as one.
 *
 * A refused upload is answered before its body has been read; closing the
 * connection stops the client from sending the rest into a dead socket.
 */
export default fp(async (fastify) => {
  fastify.addHook('onSend', (request, reply, payload, done) => {
    if (reply.statusCode >= 400 && !request.raw.complete) reply.header('Connection', 'close')
    done(null, payload)
  })
  await fastify.register(multipart, {
    attachFieldsToBody: false,
    throwFileSizeLimit: true,
    limits: {
      fileSize: largestUpload(fastify.config) + 1,
      files: 1,
      fields: 10,
      fieldNameSize: 100,
      fieldSize: 4096,
      parts: 12,
      headerPairs: 50
    }
  })
}, { name: 'multipart' })
