import { threadId as currentThreadId } from 'node:worker_threads'
import sharp from 'sharp'

/**
 * Image re-encoding as tinypool tasks. Pure: no Fastify, so the file loads in a
 * worker thread without the app. Decoding untrusted images is the risky part
 * of uploads (decompression bombs, parser bugs, slow codecs); doing it here
 * keeps that work off the event loop and bounded by `maxInputPixels`.
 */

export interface ProfilePictureTask {
  input: Uint8Array
  /** The picture is scaled down to fit a square of this side. */
  maxDimension: number
  /** Side of the square thumbnail (cropped to cover). */
  thumbnailSize: number
  /** Images with more pixels than this are refused before decoding. */
  maxInputPixels: number
}

export interface ProfilePictureResult {
  picture: Uint8Array
  thumbnail: Uint8Array
  width: number
  height: number
}

/** The image could not be decoded (corrupt, truncated, too many pixels): the client's problem, not a crash. */
export interface Undecodable { undecodable: string }

// The pool's threads do one image at a time; libvips' cache would only hold
// decoded pixels of images that are never seen again.
sharp.cache(false)

/**
 * Task: a WebP picture bounded to maxDimension and a square WebP thumbnail.
 * The pixels are re-encoded, not copied, and sharp writes no metadata unless
 * asked to: EXIF (GPS position, camera serial), XMP, IPTC and ICC profiles are
 * all dropped. The EXIF orientation is applied first so the picture keeps its
 * intended rotation once that tag is gone. Animated images keep their first frame.
 */
export async function profilePicture (task: ProfilePictureTask): Promise<ProfilePictureResult | Undecodable> {
  try {
    return await reencode(task)
  } catch (error) {
    // Everything sharp throws here is about the input; a dying thread still fails the task.
    return { undecodable: String((error as Error)?.message ?? error).slice(0, 200) }
  }
}

async function reencode (task: ProfilePictureTask): Promise<ProfilePictureResult> {
  const source = () => sharp(task.input, { limitInputPixels: task.maxInputPixels, failOn: 'error', pages: 1 }).rotate()
  const { data, info } = await source()
    .resize({ width: task.maxDimension, height: task.maxDimension, fit: 'inside', withoutEnlargement: true })
    .webp({ quality: 85 })
    .toBuffer({ resolveWithObject: true })
  const thumbnail = await source()
    .resize({ width: task.thumbnailSize, height: task.thumbnailSize, fit: 'cover', position: 'attention' })
    .webp({ quality: 80 })
    .toBuffer()
  return { picture: data, thumbnail, width: info.width, height: info.height }
}

/** Task: the id of the thread running the tasks, so tests can see it is not the main one (0). */
export function threadId (): number {
  return currentThreadId
}
