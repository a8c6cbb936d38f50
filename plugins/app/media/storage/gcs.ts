import type { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { Bucket } from '@google-cloud/storage'
import { isObjectKey, type PutOptions, type StorageDriver } from './driver.ts'

export interface GcsOptions {
  bucket: string
  /** An emulator or test server; requests to it are sent without credentials (the library's rule). */
  apiEndpoint?: string
  /** Hand out public object URLs instead of signed ones. */
  publicUrls: boolean
}

const notFound = (error: unknown) => (error as { code?: number }).code === 404

// An object name nobody writes: reading its metadata proves the bucket answers and
// our credentials may read objects, with no more than object-level permissions.
const PROBE_KEY = 'health/probe'

/**
 * Google Cloud Storage through @google-cloud/storage, credentials from the
 * library's defaults (GOOGLE_APPLICATION_CREDENTIALS or the ambient service
 * account). Uploads are single-request multipart uploads that stream the body,
 * with an MD5 check of what the bucket stored and `ifGenerationMatch: 0`, so an
 * existing object is never overwritten. Downloads go straight to GCS: a public
 * URL, or a V4 signed URL (which needs a key file or the IAM signBlob permission).
 */
export async function gcsDriver (options: GcsOptions): Promise<StorageDriver> {
  // Imported on demand: the library is large and only this driver needs it.
  const { Storage } = await import('@google-cloud/storage')
  const storage = new Storage(options.apiEndpoint ? { apiEndpoint: options.apiEndpoint } : {})
  const bucket: Bucket = storage.bucket(options.bucket)

  function file (key: string) {
    if (!isObjectKey(key)) throw new Error(`not an object key: ${JSON.stringify(key)}`)
    return bucket.file(key)
  }

  return {
    name: 'gcs',

    async put (key: string, body: Readable, { contentType }: PutOptions) {
      await pipeline(body, file(key).createWriteStream({
        resumable: false,
        validation: 'md5',
        contentType,
        metadata: { contentType },
        preconditionOpts: { ifGenerationMatch: 0 }
      }))
    },

    async delete (key: string) {
      try {
        await file(key).delete()
        return true
      } catch (error) {
        if (notFound(error)) return false
        throw error
      }
    },

    async read (key: string) {
      const target = file(key)
      try {
        const [metadata] = await target.getMetadata()
        return { stream: target.createReadStream({ validation: false }), size: Number(metadata.size ?? 0) }
      } catch (error) {
        if (notFound(error)) return undefined
        throw error
      }
    },

    async directUrl (key: string, expiresAt: number) {
      const target = file(key)
      if (options.publicUrls) return target.publicUrl()
      const [url] = await target.getSignedUrl({ version: 'v4', action: 'read', expires: expiresAt })
      return url
    },

    async check () {
      try {
        await bucket.file(PROBE_KEY).getMetadata()
      } catch (error) {
        if (!notFound(error)) throw error
      }
    }
  }
}
