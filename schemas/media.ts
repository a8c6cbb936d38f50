import { Type, type Static } from '@sinclair/typebox'
import { literals, Nullable } from './envelope.ts'
import { mediaPurposes } from '../domain/enums.ts'

/** An uploaded file as its owner (or an admin) sees it. The object key never leaves the server. */
export const MediaSchema = Type.Object({
  file_id: Type.String({ format: 'uuid' }),
  owner_id: Type.String({ format: 'uuid' }),
  name: Nullable(Type.String({ description: 'The name the file was sent with (display only; never used to store it)' })),
  mime_type: Type.String({ description: 'Detected from the content (magic bytes), not from the name or header sent' }),
  extension: Nullable(Type.String()),
  category: Type.Union([Type.Literal('image'), Type.Literal('video'), Type.Literal('pdf'), Type.Literal('document')]),
  size_bytes: Type.Integer(),
  checksum_sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }),
  purpose: literals(mediaPurposes),
  storage_driver: Type.String(),
  url: Type.String({ description: 'Where to download the file; signed URLs stop working at url_expires_at' }),
  url_expires_at: Nullable(Type.String({ format: 'date-time' })),
  created_at: Type.String({ format: 'date-time' })
}, { $id: 'Media', description: 'An uploaded file' })

export type MediaView = Static<typeof MediaSchema>

export const ProfilePictureSchema = Type.Object({
  profile_picture_url: Type.String(),
  thumbnail_url: Type.String(),
  width: Type.Integer(),
  height: Type.Integer(),
  size_bytes: Type.Integer(),
  previous_picture_deleted: Type.Boolean({ description: 'True when a previous picture was replaced and removed; false for a first picture (nothing to delete) and when the previous picture could not be removed from storage (it stays listed under purpose=profile_picture)' })
}, { $id: 'ProfilePicture', description: 'The re-encoded profile picture' })

export const mediaSchemas = [MediaSchema, ProfilePictureSchema]
