import type { Readable } from 'node:stream'

/**
 * What every storage backend offers. Keys are server-generated (SR-37) and
 * checked by `isObjectKey` before any driver sees them, so no client string
 * ever becomes a path or an object name.
 */
export interface PutOptions {
  contentType: string
}

export interface StoredFile {
  stream: Readable
  size: number
}

export interface StorageDriver {
  readonly name: 'local' | 'gcs'
  /** Stores the whole stream under `key`; a failed or cut stream leaves no object behind. */
  put: (key: string, body: Readable, options: PutOptions) => Promise<void>
  /** Removes the object; false when there was none. Any other failure throws. */
  delete: (key: string) => Promise<boolean>
  /** The bytes, for the API to serve; undefined when the object is missing. */
  read: (key: string) => Promise<StoredFile | undefined>
  /**
   * A URL at the backend itself (public, or signed until `expiresAt` ms), or
   * undefined when the API serves the bytes (local driver).
   */
  directUrl: (key: string, expiresAt: number) => Promise<string | undefined>
  /** Throws when the backend cannot be used. */
  check: () => Promise<void>
}

/** `<folder>/<uuid>[_thumb].<ext>`: the only shape a key can take. */
export const OBJECT_KEY = /^(media|profile-pictures)\/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(_thumb)?\.[a-z0-9]{2,5}$/

export const isObjectKey = (key: string) => OBJECT_KEY.test(key)
