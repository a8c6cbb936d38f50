import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type, type Static } from '@sinclair/typebox'
import { Envelope, PaginationMeta, Uuid } from '../../../schemas/envelope.ts'
import { AppError } from '../../../schemas/errors.ts'
import {
  ActivityCleanupSchema, ActivityEventAcceptedSchema, ActivityFilters, ActivityLogEntrySchema, ActivityStatisticsSchema,
  CLIENT_METADATA_MAX_BYTES, ClientActivityEventSchema
} from '../../../schemas/activity.ts'
import { resolveTimeZone, TimeZoneParam } from '../../../schemas/dashboard.ts'
import type { ActivityFilters as Filters } from '../../../plugins/app/activity/queries.ts'
import { ref } from '../../../schemas/ref.ts'

const tags = ['activity']
const DAY_MS = 86_400_000
const STATISTICS_MAX_DAYS = 366

const Page = {
  limit: Type.Integer({ minimum: 1, maximum: 100, default: 20 }),
  cursor: Type.Optional(Type.String({ maxLength: 200, description: 'meta.pagination.next_cursor of the previous page' }))
}
const ListQuery = Type.Object({ ...ActivityFilters, ...Page })
// No user_id: the actor is always the caller (SR-25); a user_id sent anyway is ignored like any unknown parameter.
const { user_id: _actor, ...OwnFilters } = ActivityFilters
const MyListQuery = Type.Object({ ...OwnFilters, ...Page })
const StatisticsQuery = Type.Object({ ...ActivityFilters, tz: TimeZoneParam })

type QueryFilters = Static<typeof StatisticsQuery>

const date = (value: string | undefined) => value === undefined ? undefined : new Date(value)

function filtersOf (query: Omit<Partial<QueryFilters>, 'tz'>): Filters {
  const from = date(query.from)
  const to = date(query.to)
  if (from && to && from > to) throw new AppError('VALIDATION_ERROR', { details: [{ field: 'querystring/from', message: 'must not be after to' }] })
  return { userId: query.user_id, level: query.level, action: query.action, module: query.module, ip: query.ip, from, to }
}

const activity: FastifyPluginAsyncTypebox = async (fastify) => {
  const { config } = fastify

  fastify.get('/', {
    config: { permissions: ['view_activity_log'] },
    schema: {
      operationId: 'listActivity',
      tags,
      summary: 'The activity log, newest first, filtered',
      description: 'Keyset pagination: pass `meta.pagination.next_cursor` as `cursor` for the next page (null on the last one). ' +
        'Entries written meanwhile never shift or repeat the following pages. `from`/`to` are inclusive ISO-8601 times.',
      querystring: ListQuery,
      response: { 200: Envelope(Type.Array(ref(ActivityLogEntrySchema)), ref(PaginationMeta)) }
    }
  }, async (request, reply) => {
    const { limit, cursor, ...query } = request.query
    const page = await fastify.activityQueries.list(filtersOf(query), { limit, cursor })
    return reply.ok(page.items, { message: 'success.activity_list', meta: { pagination: { limit, next_cursor: page.nextCursor } } })
  })

  fastify.get('/me', {
    config: { permissions: [] },
    schema: {
      operationId: 'listMyActivity',
      tags,
      summary: 'Your own activity, newest first',
      description: 'The entries where you are the actor, with the filters and pagination of GET /activity (except user_id).',
      querystring: MyListQuery,
      response: { 200: Envelope(Type.Array(ref(ActivityLogEntrySchema)), ref(PaginationMeta)) }
    }
  }, async (request, reply) => {
    const { limit, cursor, ...query } = request.query
    const page = await fastify.activityQueries.list({ ...filtersOf(query), userId: request.auth!.userId }, { limit, cursor })
    return reply.ok(page.items, { message: 'success.activity_list', meta: { pagination: { limit, next_cursor: page.nextCursor } } })
  })

  fastify.get('/statistics', {
    config: { permissions: ['view_activity_log'] },
    schema: {
      operationId: 'getActivityStatistics',
      tags,
      summary: 'Activity counts by level, action, module and day',
      description: `The list filters apply. The range defaults to the last 30 days and spans at most ${STATISTICS_MAX_DAYS} days; days are counted in \`tz\`.`,
      querystring: StatisticsQuery,
      response: { 200: Envelope(ref(ActivityStatisticsSchema)) }
    }
  }, async (request, reply) => {
    const tz = resolveTimeZone(request.query.tz)
    const filters = filtersOf(request.query)
    const to = filters.to ?? new Date(fastify.now())
    const from = filters.from ?? new Date(to.getTime() - 30 * DAY_MS)
    if (from > to) throw new AppError('VALIDATION_ERROR', { details: [{ field: 'querystring/from', message: 'must not be after to' }] })
    if (to.getTime() - from.getTime() > STATISTICS_MAX_DAYS * DAY_MS) {
      throw new AppError('VALIDATION_ERROR', { details: [{ field: 'querystring/from', message: `the range spans at most ${STATISTICS_MAX_DAYS} days` }] })
    }
    const statistics = await fastify.activityQueries.statistics({ ...filters, from, to }, tz)
    return reply.ok({ from: from.toISOString(), to: to.toISOString(), tz, ...statistics })
  })

  fastify.get('/:log_id', {
    config: { permissions: ['view_activity_log'] },
    schema: {
      operationId: 'getActivityEntry',
      tags,
      summary: 'One activity log entry',
      params: Type.Object({ log_id: Uuid() }),
      response: { 200: Envelope(ref(ActivityLogEntrySchema)) }
    }
  }, async (request, reply) => {
    const entry = await fastify.activityQueries.get(request.params.log_id)
    if (!entry) throw new AppError('ACTIVITY_NOT_FOUND')
    return reply.ok(entry)
  })

  fastify.post('/', {
    config: { audited: true, permissions: [] },
    schema: {
      operationId: 'recordClientEvent',
      tags,
      summary: 'Record an event from a client application',
      description: 'The body carries only what happened (action, module, message, level up to error, metadata). ' +
        'The answer comes once the row is written (503 when the database cannot take it). ' +
        'Who, from where (IP, user agent), the request and session ids and the time are filled in by the server, never taken from the body (SR-39). ' +
        `The module is stored as \`client.<module>\`. Rate limited to ACTIVITY_CLIENT_EVENTS_PER_MINUTE per user; metadata at most ${CLIENT_METADATA_MAX_BYTES} bytes.`,
      body: ref(ClientActivityEventSchema),
      response: { 201: Envelope(ref(ActivityEventAcceptedSchema)) }
    }
  }, async (request, reply) => {
    const auth = request.auth!
    const body = request.body
    if (body.metadata && Buffer.byteLength(JSON.stringify(body.metadata)) > CLIENT_METADATA_MAX_BYTES) {
      throw new AppError('VALIDATION_ERROR', { details: [{ field: 'body/metadata', message: `must be at most ${CLIENT_METADATA_MAX_BYTES} bytes as JSON` }] })
    }
    await fastify.throttle.limit('activity-event', auth.userId, config.ACTIVITY_CLIENT_EVENTS_PER_MINUTE, 60_000)
    const module = body.module ? `client.${body.module}` : 'client'
    const level = body.level ?? 'info'
    // Only the event's own fields come from the body; audit() takes the rest from the request.
    // The 201 and its log_id mean the row is written: a row that cannot be is a 503, never an acknowledged loss.
    const queued = await fastify.activity.record(request.caller, {
      action: body.action,
      module,
      level,
      message: body.message,
      userId: auth.userId,
      sessionId: auth.sessionId,
      statusCode: 201,
      metadata: body.metadata
    }, { security: false, written: true })
    return reply.ok({ log_id: queued.log_id, action: body.action, module, level, created_at: queued.created_at.toISOString() }, { message: 'success.activity_recorded', status: 201 })
  })

  fastify.delete('/cleanup', {
    config: { audited: true, permissions: ['delete_activity_log'] },
    schema: {
      operationId: 'deleteOldActivity',
      tags,
      summary: 'Delete activity entries older than a number of days',
      description: `\`days\` must be at least ACTIVITY_MIN_RETENTION_DAYS (${config.ACTIVITY_MIN_RETENTION_DAYS}); fewer is 400 RETENTION_TOO_SHORT. The cleanup itself is audited.`,
      querystring: Type.Object({ days: Type.Integer({ minimum: 1, maximum: 36500, description: 'Keep this many days; older entries are deleted' }) }),
      response: { 200: Envelope(ref(ActivityCleanupSchema)) }
    }
  }, async (request, reply) => {
    const { days } = request.query
    if (days < config.ACTIVITY_MIN_RETENTION_DAYS) {
      throw new AppError('RETENTION_TOO_SHORT', { details: { days, minimum_days: config.ACTIVITY_MIN_RETENTION_DAYS } })
    }
    const cutoff = new Date(fastify.now() - days * DAY_MS)
    const deleted = await fastify.activityQueries.cleanup(cutoff)
    await fastify.audit(request.caller, { action: 'activity_cleanup', module: 'activity', level: 'warning', metadata: { days, deleted, cutoff: cutoff.toISOString() } })
    return reply.ok({ deleted, cutoff: cutoff.toISOString(), days }, { message: 'success.activity_cleaned', params: { deleted } })
  })
}

export default activity
