import { randomUUID } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import { mkdir, rename, stat, unlink, writeFile } from 'node:fs/promises'
import path from 'node:path'
import type { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { isObjectKey, type StorageDriver } from './driver.ts'

/**
 * Files under a local folder (the embedded default: DATA_DIR/uploads). A file
 * is written to a temporary name and renamed into place once complete, so a
 * cut upload never leaves a partial object under a real key. The API serves
 * the bytes back itself (see routes/api/upload), so directUrl is undefined.
 */
export function localDriver (root: string): StorageDriver {
  const base = path.resolve(root)
  const tmp = path.join(base, '.tmp')

  function pathOf (key: string): string {
    // Keys are server-made and checked; the containment test is a second fence.
    if (!isObjectKey(key)) throw new Error(`not an object key: ${JSON.stringify(key)}`)
    const file = path.resolve(base, key)
    if (!file.startsWith(base + path.sep)) throw new Error('object key escapes the storage folder')
    return file
  }

  const missing = (error: unknown) => (error as NodeJS.ErrnoException).code === 'ENOENT'

  return {
    name: 'local',

    async put (key: string, body: Readable) {
      const file = pathOf(key)
      await mkdir(tmp, { recursive: true })
      await mkdir(path.dirname(file), { recursive: true })
      const partial = path.join(tmp, randomUUID())
      try {
        await pipeline(body, createWriteStream(partial, { flags: 'wx', mode: 0o600 }))
        await rename(partial, file)
      } catch (error) {
        await unlink(partial).catch(() => {})
        throw error
      }
    },

    async delete (key: string) {
      try {
        await unlink(pathOf(key))
        return true
      } catch (error) {
        if (missing(error)) return false
        throw error
      }
    },

    async read (key: string) {
      const file = pathOf(key)
      try {
        const info = await stat(file)
        return { stream: createReadStream(file), size: info.size }
      } catch (error) {
        if (missing(error)) return undefined
        throw error
      }
    },

    async directUrl () {
      return undefined
    },

    async check () {
      // Writing a probe proves more than access(): a full or read-only disk fails here.
      await mkdir(tmp, { recursive: true })
      const probe = path.join(tmp, `health-${randomUUID()}`)
      await writeFile(probe, 'ok', { mode: 0o600 })
      await unlink(probe)
    }
  }
}
