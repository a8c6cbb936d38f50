import { createHmac, timingSafeEqual } from 'node:crypto'
import path from 'node:path'
import type { Readable } from 'node:stream'
import fp from 'fastify-plugin'
import { apiPrefix } from '../../../config.ts'
import { AppError } from '../../../schemas/errors.ts'
import type { MediaPurpose } from '../../../db/schema/index.ts'
import type { PutOptions, StorageDriver, StoredFile } from './storage/driver.ts'
import { localDriver } from './storage/local.ts'
import { gcsDriver } from './storage/gcs.ts'

/**
 * The configured storage backend (STORAGE_DRIVER) behind one interface, and the
 * URLs clients download files from.
 *
 * - Uploaded media: a URL valid for STORAGE_SIGNED_URL_TTL_SECONDS. Local files
 *   are served by `GET P/upload/files/media/<name>?expires=&signature=`, where
 *   the signature is an HMAC (a key derived from the server secret) over the key
 *   and the expiry; GCS files get a V4 signed URL, or their public URL when
 *   GCS_PUBLIC_URLS is on.
 * - Profile pictures are shown to whoever may see the profile, so their URL is
 *   stable and needs no signature: `P/upload/files/profile-pictures/<name>`
 *   (the API streams the local file, or redirects to a fresh GCS URL), or the
 *   public GCS URL. The name is a random UUID, so it cannot be guessed.
 */
export interface DownloadUrl {
  url: string
  /** When a signed URL stops working; null for stable URLs. */
  expires_at: string | null
}

export interface StorageService {
  readonly driver: StorageDriver
  /** Stores a stream; errors of the stream itself (AppErrors) pass through, backend failures are STORAGE_ERROR. */
  put: (key: string, body: Readable, options: PutOptions) => Promise<void>
  /** Removes an object; false when it was already gone. A backend failure is STORAGE_ERROR. */
  delete: (key: string) => Promise<boolean>
  read: (key: string) => Promise<StoredFile | undefined>
  /** Where a client downloads the object. */
  url: (key: string, purpose: MediaPurpose) => Promise<DownloadUrl>
  /** True when `signature` is ours for this key and `expires` (unix seconds) has not passed. */
  verify: (key: string, expires: number, signature: string) => boolean
  /** A URL at the backend itself, or undefined when the API serves the bytes. */
  directUrl: (key: string) => Promise<string | undefined>
  check: () => Promise<void>
}

declare module 'fastify' {
  interface FastifyInstance { storage: StorageService }
}

/**
 * Where the API serves stored files: the route `GET FILES_PATH/:folder/:name` of
 * routes/api/upload/ (its folder mounts it at UPLOAD_ROUTES, under the API prefix).
 * Download URLs are built from the same two constants.
 */
export const UPLOAD_ROUTES = '/upload'
export const FILES_PATH = '/files'

const storageError = (error: unknown, operation: string) =>
  error instanceof AppError ? error : new AppError('STORAGE_ERROR', { details: { operation }, cause: error })

export default fp(async (fastify) => {
  const config = fastify.config
  const driver = config.STORAGE_DRIVER === 'gcs'
    ? await gcsDriver({ bucket: config.GOOGLE_STORAGE_BUCKET_NAME!, apiEndpoint: config.GCS_API_ENDPOINT, publicUrls: config.GCS_PUBLIC_URLS })
    : localDriver(path.join(config.DATA_DIR, 'uploads'))
  const ttlMs = config.STORAGE_SIGNED_URL_TTL_SECONDS * 1000
  const filesPath = `${apiPrefix(config)}${UPLOAD_ROUTES}${FILES_PATH}`
  const publicDirect = driver.name === 'gcs' && config.GCS_PUBLIC_URLS

  // A key of its own, so a download signature can never be confused with a token or OTP MAC.
  const signingKey = createHmac('sha256', config.JWT_SECRET_KEY ?? '').update('upload-download-url').digest()
  const sign = (key: string, expires: number) => createHmac('sha256', signingKey).update(`${key}\n${expires}`).digest('base64url')

  function verify (key: string, expires: number, signature: string): boolean {
    if (!Number.isSafeInteger(expires) || expires * 1000 <= fastify.now()) return false
    const expected = Buffer.from(sign(key, expires))
    const given = Buffer.from(signature)
    return given.length === expected.length && timingSafeEqual(given, expected)
  }

  const directUrl = async (key: string) => {
    try {
      return await driver.directUrl(key, fastify.now() + ttlMs)
    } catch (error) {
      throw storageError(error, 'sign')
    }
  }

  async function url (key: string, purpose: MediaPurpose): Promise<DownloadUrl> {
    if (purpose === 'profile_picture') {
      return { url: publicDirect ? (await directUrl(key))! : `${filesPath}/${key}`, expires_at: null }
    }
    const expiresAt = fastify.now() + ttlMs
    const direct = await directUrl(key)
    if (direct !== undefined) return { url: direct, expires_at: publicDirect ? null : new Date(expiresAt).toISOString() }
    const expires = Math.floor(expiresAt / 1000)
    return { url: `${filesPath}/${key}?expires=${expires}&signature=${sign(key, expires)}`, expires_at: new Date(expires * 1000).toISOString() }
  }

  const service: StorageService = {
    driver,
    async put (key, body, options) {
      try {
        await driver.put(key, body, options)
      } catch (error) {
        throw storageError(error, 'put')
      }
    },
    async delete (key) {
      try {
        return await driver.delete(key)
      } catch (error) {
        throw storageError(error, 'delete')
      }
    },
    async read (key) {
      try {
        return await driver.read(key)
      } catch (error) {
        throw storageError(error, 'read')
      }
    },
    url,
    verify,
    directUrl,
    check: () => driver.check()
  }
  fastify.decorate('storage', service)
}, { name: 'storage' })
