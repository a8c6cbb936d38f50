import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { Envelope, ListQuery, PaginationMeta, StrictObject, Uuid } from '../../../schemas/envelope.ts'
import { AppError } from '../../../schemas/errors.ts'
import { MediaSchema } from '../../../schemas/media.ts'
import { hasPermissions } from '../../../plugins/app/auth/authenticate.ts'
import { mimeOfKey } from '../../../plugins/app/media/file-types.ts'
import { isObjectKey } from '../../../plugins/app/media/storage/driver.ts'
import { FILES_PATH } from '../../../plugins/app/media/storage.ts'
import type { Media } from '../../../db/schema/index.ts'
import multipartForms from '../../../plugins/external/multipart.ts'
import { ref } from '../../../schemas/ref.ts'

const tags = ['upload']

const UrlUpload = StrictObject({
  url: Type.String({ format: 'uri', maxLength: 2048, description: 'http(s) URL the server fetches; it must resolve to a public address' })
})
const MultipartUpload = Type.Object({
  // Optional for the validator only: the part is streamed by the handler, which refuses a form without it.
  file: Type.Optional(Type.Unsafe<unknown>({ type: 'string', format: 'binary', description: 'The file (required); its type is decided by its content' }))
})

const mediaType = (header: string | undefined) => (header ?? '').split(';')[0].trim().toLowerCase()

/**
 * What a multipart form may add around its file: field parts (the parser allows
 * 10 of 4 KiB) and part headers. A form's Content-Length less this is a size the
 * file certainly reaches, so a file past the quota is refused unread.
 */
const FORM_FRAMING_BYTES = 64 * 1024

const FileFolder = Type.Union([Type.Literal('media'), Type.Literal('profile-pictures')])

const upload: FastifyPluginAsyncTypebox = async (fastify) => {
  await fastify.register(multipartForms)

  // Per user, on top of the global per-IP limit (which keeps counting this route,
  // so unauthenticated floods are limited too). @fastify/rate-limit's limiter, in
  // its shared store; a route `config.rateLimit` would replace the per-IP one.
  const perUser = fastify.createRateLimit({
    max: fastify.config.UPLOAD_RATE_LIMIT_PER_MINUTE,
    timeWindow: 60_000,
    keyGenerator: (request) => `upload-media:${request.auth!.userId}`
  })

  fastify.post('/media', {
    config: { audited: true, permissions: ['add_upload'] },
    preValidation: async (request) => {
      const limit = await perUser(request)
      if (!limit.isAllowed && limit.isExceeded) throw new AppError('RATE_LIMITED', { retryAfter: Math.max(1, limit.ttlInSeconds) })
      // Multipart bodies are streamed by the handler, not parsed: validate them as an empty form.
      if (request.isMultipart()) request.body ??= {}
      // Only these two have a schema; any other body type the server can parse (text) is refused.
      else if (mediaType(request.headers['content-type']) !== 'application/json') {
        throw new AppError('UNSUPPORTED_MEDIA_TYPE', { details: { accepted: ['multipart/form-data', 'application/json'] } })
      }
    },
    schema: {
      operationId: 'uploadMedia',
      tags,
      summary: 'Upload a file (multipart) or have the server fetch a URL',
      description: 'multipart/form-data with one file part, or JSON `{ "url": "https://..." }`. The type is detected from the content ' +
        '(images, video, PDF, office documents) and each type has its own size limit (413 FILE_TOO_LARGE). The sizes of your files ' +
        'together are bounded by UPLOAD_QUOTA_BYTES_PER_USER (413 UPLOAD_QUOTA_EXCEEDED); UPLOAD_RATE_LIMIT_PER_MINUTE uploads per minute ' +
        'per user (429 RATE_LIMITED). URL fetches follow at most ' +
        'UPLOAD_URL_MAX_REDIRECTS redirects, within UPLOAD_URL_TIMEOUT_MS, and only to public addresses (400 URL_NOT_ALLOWED).',
      body: {
        content: {
          'multipart/form-data': { schema: MultipartUpload },
          'application/json': { schema: UrlUpload }
        }
      } as never,
      response: { 201: Envelope(ref(MediaSchema)) }
    }
  }, async (request, reply) => {
    const ownerId = request.auth!.userId
    let row: Media
    let source: Record<string, unknown>
    if (request.isMultipart()) {
      const part = await request.file()
      if (!part) throw new AppError('VALIDATION_ERROR', { details: [{ field: 'body/file', message: 'must contain one file part' }] })
      const formLength = Number(request.headers['content-length'])
      const declaredLength = Number.isSafeInteger(formLength) && formLength > FORM_FRAMING_BYTES ? formLength - FORM_FRAMING_BYTES : undefined
      row = await fastify.uploads.ingest({ source: part.file, ownerId, originalName: part.filename, declaredLength, truncated: () => part.file.truncated })
      source = { source: 'multipart' }
    } else {
      const { url } = request.body as { url: string }
      const fetched = await fastify.fetchUrl(url, fastify.uploads.maxBytes)
      row = await fastify.uploads.ingest({ source: fetched.body, ownerId, originalName: fetched.name, declaredLength: fetched.length })
      source = { source: 'url', host: fetched.finalUrl.hostname }
    }
    await fastify.audit(request.caller, {
      action: 'media_upload',
      module: 'upload',
      metadata: { file_id: row.media_id, mime_type: row.mime_type, size_bytes: row.size_bytes, ...source }
    })
    return reply.ok(await fastify.uploads.view(row), { message: 'success.media_uploaded', status: 201 })
  })

  fastify.get('/media', {
    config: { permissions: [] },
    schema: {
      operationId: 'listMedia',
      tags,
      summary: 'Your files, newest first',
      querystring: Type.Object({
        ...ListQuery,
        purpose: Type.Union([Type.Literal('media'), Type.Literal('profile_picture')], { default: 'media' })
      }),
      response: { 200: Envelope(Type.Array(ref(MediaSchema)), ref(PaginationMeta)) }
    }
  }, async (request, reply) => {
    const { limit, offset, cursor, purpose } = request.query
    const page = await fastify.uploads.list(request.auth!.userId, { limit, offset, cursor, purpose })
    const items = await Promise.all(page.items.map((row) => fastify.uploads.view(row)))
    return reply.ok(items, {
      message: 'success.media_list',
      meta: { pagination: { limit, total: page.total, ...(cursor ? {} : { offset: offset ?? 0 }), next_cursor: page.nextCursor } }
    })
  })

  fastify.delete('/media/:file_id', {
    config: { audited: true, permissions: [] },
    schema: {
      operationId: 'deleteMedia',
      tags,
      summary: 'Delete a file (its owner, or permission delete_upload)',
      description: 'Removes the stored object, then its record. If storage fails the record is kept and 502 STORAGE_ERROR is answered, ' +
        'so the delete can be retried. Deleting the current profile picture clears it from the profile.',
      params: Type.Object({ file_id: Uuid() }),
      response: { 200: Envelope(Type.Object({ file_id: Type.String({ format: 'uuid' }), deleted: Type.Literal(true), object_was_missing: Type.Boolean() })) }
    }
  }, async (request, reply) => {
    const auth = request.auth!
    const row = await fastify.uploads.findById(request.params.file_id)
    // Someone else's file answers exactly like a missing one (SR-25): ids are not probed.
    if (!row || (row.user_id !== auth.userId && !hasPermissions(auth, ['delete_upload']))) throw new AppError('MEDIA_NOT_FOUND')
    const { objectMissing } = await fastify.uploads.remove(row)
    if (objectMissing) request.log.warn({ fileId: row.media_id, key: row.object_key }, 'deleted a media record whose object was already gone')
    await fastify.audit(request.caller, {
      action: 'media_delete',
      module: 'upload',
      targetUserId: row.user_id,
      metadata: { file_id: row.media_id, purpose: row.purpose, object_was_missing: objectMissing }
    })
    return reply.ok({ file_id: row.media_id, deleted: true as const, object_was_missing: objectMissing }, { message: 'success.media_deleted' })
  })

  fastify.get(`${FILES_PATH}/:folder/:name`, {
    config: { public: true },
    schema: {
      operationId: 'downloadFile',
      tags,
      summary: 'Download a stored file',
      description: 'Uploaded media need the `expires` and `signature` of the URL the API handed out (it expires after ' +
        'STORAGE_SIGNED_URL_TTL_SECONDS); profile pictures are served without them. GCS-stored files answer with a redirect to GCS.',
      params: Type.Object({ folder: FileFolder, name: Type.String({ maxLength: 64 }) }),
      querystring: Type.Object({
        expires: Type.Optional(Type.Integer({ minimum: 0 })),
        signature: Type.Optional(Type.String({ maxLength: 128 }))
      }),
      // Documentation only: the body is a stream, which Fastify sends without serializing.
      response: { 200: { description: 'The file, with its detected Content-Type', content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } } } }
    }
  }, async (request, reply) => {
    const { folder, name } = request.params
    const key = `${folder}/${name}`
    if (!isObjectKey(key)) throw new AppError('MEDIA_NOT_FOUND')
    const signed = folder === 'media'
    if (signed) {
      const { expires, signature } = request.query
      if (expires === undefined || signature === undefined || !fastify.storage.verify(key, expires, signature)) {
        throw new AppError('DOWNLOAD_LINK_INVALID')
      }
    }
    const maxAge = signed ? Math.max(0, request.query.expires! - Math.floor(fastify.now() / 1000)) : 3600
    const direct = await fastify.storage.directUrl(key)
    if (direct !== undefined) return reply.header('Cache-Control', 'private, no-store').redirect(direct, 302)
    const file = await fastify.storage.read(key)
    if (!file) throw new AppError('MEDIA_NOT_FOUND')
    const mime = mimeOfKey(key)
    const inline = mime.startsWith('image/') || mime.startsWith('video/')
    return reply
      .header('Content-Type', mime)
      .header('Content-Length', String(file.size))
      .header('Content-Disposition', `${inline ? 'inline' : 'attachment'}; filename="${name}"`)
      .header('Cache-Control', `${signed ? 'private' : 'public'}, max-age=${maxAge}`)
      // The bytes are someone's upload: never a document that runs script on our origin.
      .header('Content-Security-Policy', "default-src 'none'; sandbox")
      .header('Cross-Origin-Resource-Policy', 'cross-origin')
      .send(file.stream)
  })
}

export default upload
