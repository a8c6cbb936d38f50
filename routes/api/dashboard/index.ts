import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type, type TSchema } from '@sinclair/typebox'
import type { FastifyReply } from 'fastify'
import { Envelope } from '../../../schemas/envelope.ts'
import {
  DashboardMeta, DashboardOverviewSchema, DashboardStatisticsSchema, DistributionSchema, growthPeriods, RecentSignInSchema,
  resolveTimeZone, RoleStatisticSchema, TimeZoneParam, UserGrowthSchema, type GrowthPeriod
} from '../../../schemas/dashboard.ts'
import type { Cached } from '../../../plugins/app/dashboard/dashboard.ts'
import { ref } from '../../../schemas/ref.ts'

const tags = ['dashboard']
const permissions = ['view_dashboard']

const defaultDays: Record<GrowthPeriod, number> = { daily: 30, weekly: 84, monthly: 365 }
const GrowthQuery = {
  period: Type.Union(growthPeriods.map((p) => Type.Literal(p)), { default: 'daily' }),
  days: Type.Optional(Type.Integer({ minimum: 1, maximum: 1096, description: 'Length of the window in days (default 30 daily, 84 weekly, 365 monthly)' })),
  tz: TimeZoneParam
}
const RecentQuery = { limit: Type.Integer({ minimum: 1, maximum: 100, default: 10 }) }

const growthOptions = (query: { period: GrowthPeriod, days?: number, tz: string }) =>
  ({ period: query.period, days: query.days ?? defaultDays[query.period], tz: resolveTimeZone(query.tz) })

function send<T> (reply: FastifyReply, result: Cached<T>) {
  return reply.ok(result.data, {
    message: 'success.dashboard',
    meta: { cache_age_seconds: result.cacheAgeSeconds, generated_at: result.generatedAt.toISOString() }
  })
}

const describe = 'Cached for DASHBOARD_CACHE_SECONDS; meta.cache_age_seconds says how old the numbers are.'
const response = (data: TSchema) => ({ 200: Envelope(data, ref(DashboardMeta)) })

const dashboard: FastifyPluginAsyncTypebox = async (fastify) => {
  const { dashboard } = fastify

  fastify.get('/overview', {
    config: { permissions },
    schema: { operationId: 'getDashboardOverview', tags, summary: 'Headline numbers: accounts, sign-ins, sessions, groups', description: describe, response: response(ref(DashboardOverviewSchema)) }
  }, async (_request, reply) => send(reply, await dashboard.overview()))

  const distribution = (path: string, operationId: string, summary: string, get: () => Promise<Cached<unknown>>) => fastify.get(path, {
    config: { permissions },
    schema: { operationId, tags, summary, description: describe, response: response(ref(DistributionSchema)) }
  }, async (_request, reply) => send(reply, await get()))

  distribution('/users-by-status', 'getUsersByStatus', 'Accounts by status (active, inactive, deleted)', dashboard.usersByStatus)
  distribution('/users-by-type', 'getUsersByType', 'Accounts by user type', dashboard.usersByType)
  distribution('/users-by-auth-type', 'getUsersByAuthType', 'Accounts by sign-in identifier type (email, phone, user name)', dashboard.usersByAuthType)
  distribution('/users-by-country', 'getUsersByCountry', 'Accounts by country (null: not set)', dashboard.usersByCountry)
  distribution('/users-by-language', 'getUsersByLanguage', 'Accounts by language', dashboard.usersByLanguage)

  fastify.get('/user-growth', {
    config: { permissions },
    schema: {
      operationId: 'getUserGrowth',
      tags,
      summary: 'New accounts per day, week or month',
      description: `Buckets follow the calendar of \`tz\` (an IANA name); weeks start on Monday; empty buckets are 0. ${describe}`,
      querystring: Type.Object(GrowthQuery),
      response: response(ref(UserGrowthSchema))
    }
  }, async (request, reply) => send(reply, await dashboard.userGrowth(growthOptions(request.query))))

  fastify.get('/role-statistics', {
    config: { permissions },
    schema: { operationId: 'getRoleStatistics', tags, summary: 'Groups with their member and permission counts', description: describe, response: response(Type.Array(ref(RoleStatisticSchema))) }
  }, async (_request, reply) => send(reply, await dashboard.roleStatistics()))

  fastify.get('/recent-sign-ins', {
    config: { permissions },
    schema: {
      operationId: 'listRecentSignIns',
      tags,
      summary: 'The accounts that signed in most recently',
      description: describe,
      querystring: Type.Object(RecentQuery),
      response: response(Type.Array(ref(RecentSignInSchema)))
    }
  }, async (request, reply) => send(reply, await dashboard.recentSignIns(request.query.limit)))

  fastify.get('/all-statistics', {
    config: { permissions },
    schema: {
      operationId: 'getAllStatistics',
      tags,
      summary: 'Every statistic above in one answer (one database round trip)',
      description: `Takes the parameters of user-growth and recent-sign-ins (\`limit\`). ${describe}`,
      querystring: Type.Object({ ...GrowthQuery, ...RecentQuery }),
      response: response(ref(DashboardStatisticsSchema))
    }
  }, async (request, reply) => send(reply, await dashboard.all({ ...growthOptions(request.query), recentLimit: request.query.limit })))
}

export default dashboard
