import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { Envelope } from '../../../schemas/envelope.ts'
import { AppError } from '../../../schemas/errors.ts'
import { ProfilePictureSchema } from '../../../schemas/media.ts'
import multipartForms from '../../../plugins/external/multipart.ts'
import { ref } from '../../../schemas/ref.ts'

const profilePicture: FastifyPluginAsyncTypebox = async (fastify) => {
  await fastify.register(multipartForms)

  fastify.post('/profile-picture', {
    config: { audited: true, permissions: ['edit_profile'] },
    preValidation: async (request) => {
      if (!request.isMultipart()) throw new AppError('UNSUPPORTED_MEDIA_TYPE', { details: { expected: 'multipart/form-data' } })
      request.body ??= {}
    },
    schema: {
      operationId: 'uploadProfilePicture',
      tags: ['settings'],
      summary: 'Upload a new profile picture (multipart)',
      description: 'One image part (JPEG, PNG, GIF, WebP or AVIF, by content, up to UPLOAD_MAX_BYTES_IMAGE). It is re-encoded to WebP ' +
        'in a worker thread: metadata (EXIF with GPS position, XMP, ICC) is dropped, the size is bounded by PROFILE_PICTURE_MAX_DIMENSION, ' +
        'and a square thumbnail is made. The previous picture is deleted.',
      body: {
        content: {
          'multipart/form-data': {
            schema: Type.Object({ file: Type.Optional(Type.Unsafe<unknown>({ type: 'string', format: 'binary', description: 'The image (required; streamed, so the validator cannot see it)' })) })
          }
        }
      } as never,
      response: { 200: Envelope(ref(ProfilePictureSchema)) }
    }
  }, async (request, reply) => {
    const userId = request.auth!.userId
    const limit = fastify.uploads.limits.image
    // The parser stops at the image limit, so no more than that is ever held in memory.
    const part = await request.file({ limits: { fileSize: limit + 1 } })
    if (!part) throw new AppError('VALIDATION_ERROR', { details: [{ field: 'body/file', message: 'must contain one file part' }] })
    const input = await fastify.uploads.readSmall(part.file, limit, () => part.file.truncated)
    const outcome = await fastify.uploads.setProfilePicture(userId, input, part.filename)
    await fastify.audit(request.caller, {
      action: 'profile_picture_update',
      module: 'settings',
      metadata: { size_bytes: outcome.size_bytes, previous_picture_deleted: outcome.previous_picture_deleted }
    })
    return reply.ok(outcome, { message: 'success.profile_picture_updated' })
  })
}

export default profilePicture
