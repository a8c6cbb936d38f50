import type { AppConfig } from '../../../config.ts'

/** What an upload may be: the allow-list of types (by magic bytes), their size limits and display names (SR-35). */

// Loaded with the first upload: an instance that never receives one skips its parsers.
let fileType: Promise<typeof import('file-type')> | undefined
export const loadFileType = () => (fileType ??= import('file-type'))

export type FileCategory = 'image' | 'video' | 'pdf' | 'document'

export const allowedTypes: Readonly<Record<string, { category: FileCategory, ext: string }>> = {
  'image/jpeg': { category: 'image', ext: 'jpg' },
  'image/png': { category: 'image', ext: 'png' },
  'image/gif': { category: 'image', ext: 'gif' },
  'image/webp': { category: 'image', ext: 'webp' },
  'image/avif': { category: 'image', ext: 'avif' },
  'image/heic': { category: 'image', ext: 'heic' },
  'video/mp4': { category: 'video', ext: 'mp4' },
  'video/webm': { category: 'video', ext: 'webm' },
  'video/quicktime': { category: 'video', ext: 'mov' },
  'application/pdf': { category: 'pdf', ext: 'pdf' },
  'application/vnd.openxmlformats-officedocument.wordprocessingml.document': { category: 'document', ext: 'docx' },
  'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet': { category: 'document', ext: 'xlsx' },
  'application/vnd.openxmlformats-officedocument.presentationml.presentation': { category: 'document', ext: 'pptx' },
  'application/vnd.oasis.opendocument.text': { category: 'document', ext: 'odt' },
  'application/vnd.oasis.opendocument.spreadsheet': { category: 'document', ext: 'ods' },
  'application/vnd.oasis.opendocument.presentation': { category: 'document', ext: 'odp' },
  'application/rtf': { category: 'document', ext: 'rtf' }
}

/** What a profile picture may be sent as (sharp decodes all of them); it is stored as WebP. */
export const profilePictureInputTypes = ['image/jpeg', 'image/png', 'image/gif', 'image/webp', 'image/avif']

/** MIME type of a stored object, from the extension its server-made key carries. */
export const mimeOfKey = (key: string): string => {
  const ext = key.slice(key.lastIndexOf('.') + 1)
  return Object.entries(allowedTypes).find(([, t]) => t.ext === ext)?.[0] ?? 'application/octet-stream'
}

export const categoryOf = (mime: string): FileCategory => allowedTypes[mime]?.category ?? 'document'

export function categoryLimits (config: AppConfig): Record<FileCategory, number> {
  return {
    image: config.UPLOAD_MAX_BYTES_IMAGE,
    video: config.UPLOAD_MAX_BYTES_VIDEO,
    pdf: config.UPLOAD_MAX_BYTES_PDF,
    document: config.UPLOAD_MAX_BYTES_DOCUMENT
  }
}

/** The largest file any type may be: the multipart parser's and URL fetcher's cap. */
export const largestUpload = (config: AppConfig) => Math.max(...Object.values(categoryLimits(config)))

/** Enough for every allowed type, office documents (zip entries) included. */
export const SNIFF_BYTES = 64 * 1024

/**
 * A client's file name, for display only: no path, no control or bidirectional
 * override characters (which make "gpj.exe" look like "exe.jpg"), at most 255 characters.
 */
export function displayName (raw: string | undefined): string | null {
  if (!raw) return null
  const base = raw.replace(/^.*[\\/]/, '')
  // eslint-disable-next-line no-control-regex
  const clean = base.normalize('NFC').replace(/[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]/g, '').trim()
  return clean === '' ? null : [...clean].slice(0, 255).join('')
}

/** Pulls chunks until `bytes` are in or the stream ends. */
export async function readHead (iterator: AsyncIterator<Buffer>, bytes: number): Promise<{ head: Buffer, ended: boolean }> {
  const chunks: Buffer[] = []
  let length = 0
  while (length < bytes) {
    const next = await iterator.next()
    if (next.done) return { head: Buffer.concat(chunks), ended: true }
    chunks.push(next.value)
    length += next.value.length
  }
  return { head: Buffer.concat(chunks), ended: false }
}
