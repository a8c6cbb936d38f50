import fp from 'fastify-plugin'
import Tinypool from 'tinypool'
import { workerEntry } from '../http/worker-pool.ts'
import { AppError } from '../../../schemas/errors.ts'
import type { ProfilePictureResult, ProfilePictureTask, Undecodable } from '../../../workers/image.ts'

/**
 * Image re-encoding in a tinypool of worker threads (workers/image.ts), started
 * on first use so an instance that never receives a picture never starts one.
 */
export interface ImageService {
  /** Re-encodes a picture and makes its thumbnail; an undecodable image is FILE_TYPE_NOT_ALLOWED. */
  profilePicture: (input: Uint8Array) => Promise<ProfilePictureResult>
  /** The thread id of a pool worker; 0 would mean the main thread. */
  workerThreadId: () => Promise<number>
  /** Tasks handed to the pool since start. */
  readonly tasks: Readonly<Record<'profilePicture' | 'threadId', number>>
}

declare module 'fastify' {
  interface FastifyInstance { images: ImageService }
}

// workers/image.ts, through its .mjs shim when running from sources (http/worker-pool.ts).
const workerOptions = workerEntry('image')

// Enough for a 50-megapixel photo; a decompression bomb declares far more.
const MAX_INPUT_PIXELS = 50_000_000

export default fp(async (fastify) => {
  const { IMAGE_POOL_THREADS, PROFILE_PICTURE_MAX_DIMENSION, PROFILE_PICTURE_THUMBNAIL_SIZE } = fastify.config
  let pool: Tinypool | undefined
  let starting: Promise<Tinypool> | undefined
  let closed = false

  const getPool = () => (starting ??= (async () => {
    // sharp's native libraries must stay loaded in the main thread: on glibc a
    // worker that exits would otherwise unload them under the other workers.
    await import('sharp')
    pool = new Tinypool({ ...workerOptions, minThreads: 0, maxThreads: IMAGE_POOL_THREADS, idleTimeout: 30_000 })
    pool.on('error', (err: unknown) => fastify.log.error({ err }, 'image worker failed'))
    return pool
  })())

  fastify.addHook('onClose', async () => {
    closed = true
    await starting?.catch(() => {})
    await pool?.destroy()
  })

  const tasks = { profilePicture: 0, threadId: 0 }
  async function run<T> (name: keyof typeof tasks, task?: ProfilePictureTask): Promise<T> {
    if (closed) throw new AppError('SERVICE_UNAVAILABLE')
    const ready = await getPool()
    if (closed) throw new AppError('SERVICE_UNAVAILABLE')
    tasks[name]++
    return ready.run(task, { name })
  }

  async function profilePicture (input: Uint8Array): Promise<ProfilePictureResult> {
    const task: ProfilePictureTask = {
      input,
      maxDimension: PROFILE_PICTURE_MAX_DIMENSION,
      thumbnailSize: PROFILE_PICTURE_THUMBNAIL_SIZE,
      maxInputPixels: MAX_INPUT_PIXELS
    }
    const result = await run<ProfilePictureResult | Undecodable>('profilePicture', task)
    if ('undecodable' in result) {
      throw new AppError('FILE_TYPE_NOT_ALLOWED', { details: { reason: 'undecodable_image' }, cause: new Error(result.undecodable) })
    }
    return result
  }

  const service: ImageService = { profilePicture, workerThreadId: () => run<number>('threadId'), tasks }
  fastify.decorate('images', service)
}, { name: 'images' })
