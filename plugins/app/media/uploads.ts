import { createHash, randomUUID } from 'node:crypto'
import { Readable } from 'node:stream'
import fp from 'fastify-plugin'
import { and, count, desc, eq, inArray, lt, or, sql, type SQL } from 'drizzle-orm'
import { media, type Media, type MediaPurpose } from '../../../db/schema/index.ts'
import { AppError } from '../../../schemas/errors.ts'
import { decodeCursor as decodeCursorOf, encodeCursor as encodeCursorOf, isTimestamp, isUuid } from '../../../schemas/cursor.ts'
import type { MediaView } from '../../../schemas/media.ts'
import type { Database } from '../../../db/client.ts'
import { allowedTypes, categoryLimits, categoryOf, displayName, largestUpload, loadFileType, profilePictureInputTypes, readHead, SNIFF_BYTES, type FileCategory } from './file-types.ts'

/*
 * Uploaded files: type from magic bytes against an allow-list, per-type size
 * limits, server-generated object names and one `media` row per file (SR-35,
 * SR-37). Bodies stream from the client (or the URL fetcher) through a meter and
 * a SHA-256 hash into the storage driver; only the first 64 KiB are held, to
 * detect the type. Nothing the client names a file decides its type or key.
 */

export interface IngestInput {
  source: Readable
  ownerId: string
  originalName?: string
  /**
   * Bytes the file has at least, when the sender said so (a fetched URL's
   * Content-Length; a form's, less its framing): refused before any byte is
   * read when that is already past the type's limit or the owner's quota.
   */
  declaredLength?: number
  /** True when the sender's stream was cut at the parser's limit. */
  truncated?: () => boolean
}

export interface ListOptions {
  limit: number
  offset?: number
  cursor?: string
  purpose: MediaPurpose
}

export interface ProfilePictureOutcome {
  profile_picture_url: string
  thumbnail_url: string
  width: number
  height: number
  size_bytes: number
  previous_picture_deleted: boolean
}

export interface UploadService {
  readonly limits: Readonly<Record<FileCategory, number>>
  readonly maxBytes: number
  /** Detects, checks, streams into storage and records one file. */
  ingest: (input: IngestInput) => Promise<Media>
  /** Bytes of the owner's uploaded media (profile pictures not counted): what UPLOAD_QUOTA_BYTES_PER_USER bounds. */
  usedBytes: (ownerId: string) => Promise<number>
  /** Reads a whole (small) upload into memory, refusing it past `maxBytes`. */
  readSmall: (source: Readable, maxBytes: number, truncated?: () => boolean) => Promise<Buffer>
  view: (row: Media) => Promise<MediaView>
  list: (ownerId: string, options: ListOptions) => Promise<{ items: Media[], total: number, nextCursor: string | null }>
  findById: (fileId: string) => Promise<Media | undefined>
  /** Deletes the object(s) then the row(s); a storage failure keeps the rows and is thrown. */
  remove: (row: Media) => Promise<{ objectMissing: boolean }>
  setProfilePicture: (userId: string, input: Buffer, originalName?: string) => Promise<ProfilePictureOutcome>
  /**
   * Deletes every file of a user (account deletion): objects first, then their rows.
   * Rows whose object could not be deleted stay, so nothing is orphaned; `failed` counts them.
   */
  removeAllForUser: (userId: string) => Promise<{ deleted: number, failed: number }>
  /** Every file row of a user (account deletion, inside its transaction). */
  ownedBy: (userId: string, tx?: Database) => Promise<Media[]>
}

declare module 'fastify' {
  interface FastifyInstance { uploads: UploadService }
}

const tooLarge = (category: FileCategory, maxBytes: number) =>
  new AppError('FILE_TOO_LARGE', { details: { category, max_bytes: maxBytes } })

const overQuota = (quota: number, used: number) =>
  new AppError('UPLOAD_QUOTA_EXCEEDED', { details: { quota_bytes: quota, used_bytes: used } })

async function usedBytesOf (db: Database, ownerId: string): Promise<number> {
  const [{ used }] = await db.select({ used: sql<string>`coalesce(sum(${media.size_bytes}), 0)` }).from(media)
    .where(and(eq(media.user_id, ownerId), eq(media.purpose, 'media')))
  return Number(used)
}

/** An error of the sender's stream: ours pass through, the parser's size limit is FILE_TOO_LARGE, anything else a cut upload. */
function senderError (error: unknown, category: FileCategory | undefined, maxBytes: number): AppError {
  if (error instanceof AppError) return error
  if ((error as { code?: string })?.code === 'FST_REQ_FILE_TOO_LARGE') return tooLarge(category ?? 'document', maxBytes)
  return new AppError('BAD_REQUEST', { details: { reason: 'upload_interrupted' }, cause: error })
}

const pictureKeys = (mainKey: string) => [mainKey, mainKey.replace(/\.webp$/, '_thumb.webp')]
const mainPictureKey = (key: string) => key.replace(/_thumb\.webp$/, '.webp')

interface Cursor { at: string, id: string }
const encodeCursor = (row: Media) => encodeCursorOf({ at: row.created_at.toISOString(), id: row.media_id })
const decodeCursor = (cursor: string): Cursor => decodeCursorOf(cursor, (value): value is Cursor =>
  typeof value === 'object' && value !== null && isTimestamp((value as Cursor).at) && isUuid((value as Cursor).id))

export default fp(async (fastify) => {
  const limits = categoryLimits(fastify.config)
  const maxBytes = largestUpload(fastify.config)
  const db = () => fastify.db
  // Milliseconds, like the cursors that carry it: PostgreSQL's microseconds would make keyset pages skip rows.
  const now = () => new Date(fastify.now())

  const quota = fastify.config.UPLOAD_QUOTA_BYTES_PER_USER

  /**
   * The quota (SR-37's owner is the unit) is checked three times: before any
   * byte is read (used + declared length), while the body streams (the meter
   * stops at the bytes left), and when the row is written, under a lock on the
   * owner's user row. The last check is the one that holds: parallel uploads
   * of one owner all pass the first two, then take the lock one at a time,
   * each seeing the sizes of those committed before it; the one that would go
   * past the quota is refused and its object deleted. No counter to drift, on
   * either stack; the cost is that racing uploads may be streamed in full
   * before the loser is refused.
   */
  async function ingest (input: IngestInput): Promise<Media> {
    const iterator = input.source[Symbol.asyncIterator]() as AsyncIterator<Buffer>
    const abandon = () => { input.source.destroy() }
    let remaining = Infinity
    if (quota > 0) {
      const used = await usedBytesOf(db(), input.ownerId)
      remaining = quota - used
      if (remaining <= 0 || (input.declaredLength ?? 0) > remaining) {
        abandon()
        throw overQuota(quota, used)
      }
    }
    let head: Buffer
    let ended: boolean
    try {
      ({ head, ended } = await readHead(iterator, SNIFF_BYTES))
    } catch (error) {
      abandon()
      throw senderError(error, undefined, maxBytes)
    }
    const detected = await (await loadFileType()).fileTypeFromBuffer(head)
    const type = detected ? allowedTypes[detected.mime] : undefined
    if (!detected || !type) {
      abandon()
      throw new AppError('FILE_TYPE_NOT_ALLOWED', { details: { detected: detected?.mime ?? null, allowed: Object.keys(allowedTypes) } })
    }
    const limit = limits[type.category]
    if ((input.declaredLength ?? 0) > limit || head.length > limit) {
      abandon()
      throw tooLarge(type.category, limit)
    }

    const hash = createHash('sha256')
    let size = 0
    async function * metered (): AsyncGenerator<Buffer> {
      try {
        let chunk: Buffer | undefined = head
        while (chunk !== undefined) {
          size += chunk.length
          if (size > limit) throw tooLarge(type!.category, limit)
          if (size > remaining) throw overQuota(quota, quota - remaining)
          hash.update(chunk)
          yield chunk
          if (ended) break
          const next = await iterator.next()
          chunk = next.done ? undefined : next.value
        }
        if (input.truncated?.()) throw tooLarge(type!.category, limit)
      } catch (error) {
        throw senderError(error, type!.category, limit)
      } finally {
        // Stopped early (too large, storage failed): release the sender's stream too.
        if (!input.source.readableEnded) abandon()
      }
    }

    const key = `media/${randomUUID()}.${type.ext}`
    await fastify.storage.put(key, Readable.from(metered()), { contentType: detected.mime })
    try {
      return await db().transaction(async (tx) => {
        if (quota > 0) {
          await fastify.users.lock(tx, input.ownerId)
          const used = await usedBytesOf(tx, input.ownerId)
          if (used + size > quota) throw overQuota(quota, used)
        }
        const [row] = await tx.insert(media).values({
          user_id: input.ownerId,
          storage_driver: fastify.storage.driver.name,
          object_key: key,
          mime_type: detected.mime,
          extension: type.ext,
          size_bytes: size,
          checksum_sha256: hash.digest('hex'),
          original_name: displayName(input.originalName),
          purpose: 'media',
          created_at: now()
        }).returning()
        return row
      })
    } catch (error) {
      // No object without its row: an orphan could never be listed or deleted.
      await fastify.storage.delete(key).catch((err: unknown) => fastify.log.error({ err, key }, 'could not remove the object of a failed upload'))
      throw error
    }
  }

  async function readSmall (source: Readable, limit: number, truncated?: () => boolean): Promise<Buffer> {
    const chunks: Buffer[] = []
    let size = 0
    try {
      for await (const chunk of source as AsyncIterable<Buffer>) {
        size += chunk.length
        if (size > limit) throw tooLarge('image', limit)
        chunks.push(chunk)
      }
      if (truncated?.()) throw tooLarge('image', limit)
    } catch (error) {
      source.destroy()
      throw senderError(error, 'image', limit)
    }
    return Buffer.concat(chunks)
  }

  async function view (row: Media): Promise<MediaView> {
    const { url, expires_at: expiresAt } = await fastify.storage.url(row.object_key, row.purpose)
    return {
      file_id: row.media_id,
      owner_id: row.user_id,
      name: row.original_name,
      mime_type: row.mime_type,
      extension: row.extension,
      category: categoryOf(row.mime_type),
      size_bytes: row.size_bytes,
      checksum_sha256: row.checksum_sha256,
      purpose: row.purpose,
      storage_driver: row.storage_driver,
      url,
      url_expires_at: expiresAt,
      created_at: row.created_at.toISOString()
    }
  }

  async function list (ownerId: string, options: ListOptions) {
    const scope = and(eq(media.user_id, ownerId), eq(media.purpose, options.purpose))!
    let where: SQL = scope
    if (options.cursor) {
      const cursor = decodeCursor(options.cursor)
      const at = new Date(cursor.at)
      where = and(scope, or(lt(media.created_at, at), and(eq(media.created_at, at), lt(media.media_id, cursor.id))))!
    }
    const query = db().select().from(media).where(where)
      .orderBy(desc(media.created_at), desc(media.media_id))
      .limit(options.limit + 1)
    const [rows, [{ total }]] = await Promise.all([
      options.cursor || !options.offset ? query : query.offset(options.offset),
      db().select({ total: count() }).from(media).where(scope)
    ])
    const items = rows.slice(0, options.limit)
    return { items, total, nextCursor: rows.length > options.limit ? encodeCursor(items[items.length - 1]) : null }
  }

  async function findById (fileId: string) {
    const [row] = await db().select().from(media).where(eq(media.media_id, fileId))
    return row
  }

  async function remove (row: Media) {
    const isPicture = row.purpose === 'profile_picture'
    const keys = isPicture ? pictureKeys(mainPictureKey(row.object_key)) : [row.object_key]
    let objectMissing = false
    // Objects first: if storage fails, the rows stay and the caller can retry;
    // a retry after a lost row delete finds the objects gone and ends the job.
    for (const key of keys) {
      const existed = await fastify.storage.delete(key)
      if (key === row.object_key) objectMissing = !existed
    }
    const pictureCleared = await db().transaction(async (tx) => {
      await tx.delete(media).where(and(eq(media.user_id, row.user_id), inArray(media.object_key, keys)))
      if (!isPicture) return false
      return await fastify.users.clearProfilePicture(row.user_id, keys[0], tx)
    })
    if (pictureCleared) await fastify.sessions.refreshUserState(row.user_id)
    return { objectMissing }
  }

  async function setProfilePicture (userId: string, input: Buffer, originalName?: string): Promise<ProfilePictureOutcome> {
    const detected = await (await loadFileType()).fileTypeFromBuffer(input)
    if (!detected || !profilePictureInputTypes.includes(detected.mime)) {
      throw new AppError('FILE_TYPE_NOT_ALLOWED', { details: { detected: detected?.mime ?? null, allowed: profilePictureInputTypes } })
    }
    const image = await fastify.images.profilePicture(input)
    const picture = Buffer.from(image.picture.buffer, image.picture.byteOffset, image.picture.byteLength)
    const thumbnail = Buffer.from(image.thumbnail.buffer, image.thumbnail.byteOffset, image.thumbnail.byteLength)
    const [mainKey, thumbKey] = pictureKeys(`profile-pictures/${randomUUID()}.webp`)
    const discard = (keys: string[]) => Promise.all(keys.map((key) => fastify.storage.delete(key).catch((err: unknown) =>
      fastify.log.error({ err, key }, 'could not remove the object of a failed profile picture'))))

    await fastify.storage.put(mainKey, Readable.from([picture]), { contentType: 'image/webp' })
    try {
      await fastify.storage.put(thumbKey, Readable.from([thumbnail]), { contentType: 'image/webp' })
    } catch (error) {
      await discard([mainKey])
      throw error
    }
    const pictureUrl = (await fastify.storage.url(mainKey, 'profile_picture')).url
    const thumbnailUrl = (await fastify.storage.url(thumbKey, 'profile_picture')).url
    const name = displayName(originalName)
    const row = (key: string, bytes: Buffer) => ({
      user_id: userId,
      storage_driver: fastify.storage.driver.name,
      object_key: key,
      mime_type: 'image/webp',
      extension: 'webp',
      size_bytes: bytes.length,
      checksum_sha256: createHash('sha256').update(bytes).digest('hex'),
      original_name: name,
      purpose: 'profile_picture' as const,
      created_at: now()
    })
    let previousKey: string | null
    try {
      previousKey = await db().transaction(async (tx) => {
        const current = await fastify.users.lock(tx, userId)
        if (!current) throw new AppError('USER_NOT_FOUND')
        await tx.insert(media).values([row(mainKey, picture), row(thumbKey, thumbnail)])
        await fastify.users.update(userId, { profile_picture_url: pictureUrl, profile_picture_key: mainKey }, tx)
        return current.profile_picture_key
      })
    } catch (error) {
      await discard([mainKey, thumbKey])
      throw error
    }
    await fastify.sessions.refreshUserState(userId)

    // True only when a previous picture existed and was removed: a first picture deleted nothing.
    let previousDeleted = false
    if (previousKey) {
      try {
        const [previous] = await db().select().from(media)
          .where(and(eq(media.user_id, userId), eq(media.object_key, previousKey)))
        if (previous) {
          await remove(previous)
          previousDeleted = true
        } else fastify.log.warn({ userId, key: previousKey }, 'previous profile picture is not a file of ours; left in place')
      } catch (err) {
        // The new picture is in place; the old one is reported, not hidden, and stays listed for a retry.
        fastify.log.error({ err, userId, key: previousKey }, 'could not delete the previous profile picture')
      }
    }
    return {
      profile_picture_url: pictureUrl,
      thumbnail_url: thumbnailUrl,
      width: image.width,
      height: image.height,
      size_bytes: picture.length,
      previous_picture_deleted: previousDeleted
    }
  }

  async function removeAllForUser (userId: string) {
    const rows = await db().select().from(media).where(eq(media.user_id, userId))
    const gone: string[] = []
    for (const row of rows) {
      try {
        await fastify.storage.delete(row.object_key)
        gone.push(row.object_key)
      } catch (err) {
        fastify.log.error({ err, userId, key: row.object_key }, 'could not delete a file of a deleted account')
      }
    }
    if (gone.length > 0) await db().delete(media).where(and(eq(media.user_id, userId), inArray(media.object_key, gone)))
    return { deleted: gone.length, failed: rows.length - gone.length }
  }

  const usedBytes = (ownerId: string) => usedBytesOf(db(), ownerId)

  const ownedBy = (userId: string, tx: Database = db()) => tx.select().from(media).where(eq(media.user_id, userId))

  fastify.decorate('uploads', { limits, maxBytes, ingest, usedBytes, readSmall, view, list, findById, remove, setProfilePicture, removeAllForUser, ownedBy })
}, { name: 'uploads', dependencies: ['db', 'storage', 'images', 'sessions', 'users'] })
