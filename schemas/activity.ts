import { Type, type Static } from '@sinclair/typebox'
import { activityLevels } from '../domain/enums.ts'
import { literals, Nullable, StrictObject } from './envelope.ts'

const Level = literals(activityLevels)

/** One activity_log row as the API shows it. */
export const ActivityLogEntrySchema = Type.Object({
  log_id: Type.String({ format: 'uuid' }),
  level: Level,
  action: Type.String(),
  module: Type.String(),
  message: Nullable(Type.String()),
  user_id: Nullable(Type.String({ format: 'uuid', description: 'The actor' })),
  target_user_id: Nullable(Type.String({ format: 'uuid', description: 'The account the event concerns' })),
  session_id: Nullable(Type.String({ format: 'uuid' })),
  ip_address: Nullable(Type.String()),
  user_agent: Nullable(Type.String()),
  device: Nullable(Type.String({ description: 'Device type parsed from the user agent: desktop, mobile, tablet, …' })),
  browser: Nullable(Type.String({ description: 'Browser (or client) name and major version' })),
  os: Nullable(Type.String({ description: 'Operating system name and version' })),
  endpoint: Nullable(Type.String({ description: 'Route pattern, e.g. /api/v1/groups/:group_id' })),
  method: Nullable(Type.String()),
  status_code: Nullable(Type.Integer()),
  request_id: Nullable(Type.String()),
  duration_ms: Nullable(Type.Integer()),
  metadata: Nullable(Type.Record(Type.String(), Type.Unknown())),
  created_at: Type.String({ format: 'date-time' })
}, { $id: 'ActivityLogEntry', description: 'An activity log entry: an audit event, a client event or a mutating request' })

export type ActivityLogEntry = Static<typeof ActivityLogEntrySchema>

const Name = (description: string) => Type.String({ pattern: '^[a-z][a-z0-9_.-]{0,63}$', description })

/** The filters of GET P/activity (and of its statistics). */
export const ActivityFilters = {
  user_id: Type.Optional(Type.String({ format: 'uuid', description: 'The actor' })),
  level: Type.Optional(Level),
  action: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
  module: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
  ip: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'Exact client IP address' })),
  from: Type.Optional(Type.String({ format: 'date-time', description: 'Entries at or after this time (ISO-8601)' })),
  to: Type.Optional(Type.String({ format: 'date-time', description: 'Entries at or before this time (ISO-8601)' }))
}

export const CLIENT_METADATA_MAX_BYTES = 4096

/**
 * A client event. Only these fields come from the client; the actor, IP, user
 * agent, request id, session id and time are the server's (SR-39), and unknown
 * fields (an attempt to set `user_id`, say) are a 400.
 */
export const ClientActivityEventSchema = StrictObject({
  action: Name('What happened, e.g. page_view, export_clicked'),
  module: Type.Optional(Name('Where it happened; stored as client.<module> (plain `client` when absent), so client events never pass for server events')),
  message: Type.Optional(Type.String({ maxLength: 500 })),
  level: Type.Optional(Type.Union([Type.Literal('info'), Type.Literal('warning'), Type.Literal('error')], { default: 'info' })),
  metadata: Type.Optional(Type.Record(Type.String({ maxLength: 64 }), Type.Unknown(), { maxProperties: 20, description: `Free-form details, at most ${CLIENT_METADATA_MAX_BYTES} bytes as JSON` }))
}, { $id: 'ClientActivityEvent', description: 'An event reported by a client application' })

export const ActivityEventAcceptedSchema = Type.Object({
  log_id: Type.String({ format: 'uuid' }),
  action: Type.String(),
  module: Type.String(),
  level: Level,
  created_at: Type.String({ format: 'date-time' })
}, { $id: 'ActivityEventAccepted', description: 'The recorded client event; it is written within ACTIVITY_FLUSH_INTERVAL_MS' })

export const STATISTICS_TOP_ACTIONS = 100

export const ActivityStatisticsSchema = Type.Object({
  from: Type.String({ format: 'date-time' }),
  to: Type.String({ format: 'date-time' }),
  tz: Type.String(),
  total: Type.Integer(),
  by_level: Type.Array(Type.Object({ level: Level, count: Type.Integer() }), { description: 'Every level, zero-filled' }),
  by_action: Type.Array(Type.Object({ action: Type.String(), count: Type.Integer() }), { description: `The ${STATISTICS_TOP_ACTIONS} most frequent actions` }),
  by_module: Type.Array(Type.Object({ module: Type.String(), count: Type.Integer() })),
  per_day: Type.Array(Type.Object({ date: Type.String({ format: 'date' }), count: Type.Integer() }), { description: 'Every day of the range in the time zone tz, zero-filled' })
}, { $id: 'ActivityStatistics', description: 'Counts of activity entries by level, action, module and day' })

export const ActivityCleanupSchema = Type.Object({
  deleted: Type.Integer(),
  cutoff: Type.String({ format: 'date-time', description: 'Entries older than this were deleted' }),
  days: Type.Integer()
}, { $id: 'ActivityCleanup' })

export const activitySchemas = [ActivityLogEntrySchema, ClientActivityEventSchema, ActivityEventAcceptedSchema, ActivityStatisticsSchema, ActivityCleanupSchema]
