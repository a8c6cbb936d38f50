import { Type, type Static } from '@sinclair/typebox'
import { literals, Nullable } from './envelope.ts'
import { ref } from './ref.ts'

const Count = (description?: string) => Type.Integer({ minimum: 0, description })

export const DashboardOverviewSchema = Type.Object({
  total_users: Count('Every account, deleted ones included'),
  active_users: Count('Status active and not deactivated'),
  inactive_users: Count('Deactivated or inactive, not deleted'),
  deleted_users: Count(),
  email_verified_users: Count('Not deleted, with a verified email'),
  phone_verified_users: Count('Not deleted, with a verified phone number'),
  new_users_last_24h: Count(),
  new_users_last_7d: Count(),
  new_users_last_30d: Count(),
  signed_in_last_24h: Count('Accounts whose last login is this recent'),
  signed_in_last_7d: Count(),
  signed_in_last_30d: Count(),
  active_sessions: Count('Sessions neither revoked nor expired'),
  groups: Count(),
  permissions: Count()
}, { $id: 'DashboardOverview', description: 'Headline numbers' })

export const DistributionSchema = Type.Object({
  total: Count('Accounts counted (deleted accounts are left out, except by status)'),
  buckets: Type.Array(Type.Object({
    value: Nullable(Type.String({ description: 'The value; null gathers the accounts where it is not set' })),
    count: Count(),
    percentage: Type.Number({ minimum: 0, maximum: 100, description: 'Share of total, one decimal' })
  }), { description: 'Largest first; known values of a fixed list appear even with 0' })
}, { $id: 'Distribution', description: 'Accounts counted by one attribute' })

export const growthPeriods = ['daily', 'weekly', 'monthly'] as const
export type GrowthPeriod = typeof growthPeriods[number]

export const UserGrowthSchema = Type.Object({
  period: literals(growthPeriods),
  days: Type.Integer(),
  tz: Type.String(),
  total_before: Count('Accounts created before the first bucket'),
  buckets: Type.Array(Type.Object({
    period_start: Type.String({ format: 'date', description: 'First day of the bucket in tz (weeks start on Monday)' }),
    new_users: Count(),
    total_users: Count('Accounts created up to the end of the bucket')
  }), { description: 'Every bucket of the window, oldest first, zero-filled' })
}, { $id: 'UserGrowth', description: 'New accounts per day, week or month in a time zone' })

export const RoleStatisticSchema = Type.Object({
  group_id: Type.String({ format: 'uuid' }),
  codename: Type.String(),
  name: Type.String(),
  is_system: Type.Boolean(),
  is_active: Type.Boolean(),
  members: Count('Members not deleted'),
  active_members: Count('Members active and not deactivated'),
  permissions: Count('Permissions the group grants')
}, { $id: 'RoleStatistic', description: 'A group with its member and permission counts' })

export const RecentSignInSchema = Type.Object({
  user_id: Type.String({ format: 'uuid' }),
  email: Nullable(Type.String()),
  user_name: Nullable(Type.String()),
  first_name: Nullable(Type.String()),
  last_name: Nullable(Type.String()),
  user_type: Type.String(),
  last_login: Type.String({ format: 'date-time' })
}, { $id: 'RecentSignIn', description: 'An account and when it last signed in' })

export const DashboardStatisticsSchema = Type.Object({
  overview: ref(DashboardOverviewSchema),
  users_by_status: ref(DistributionSchema),
  users_by_type: ref(DistributionSchema),
  users_by_auth_type: ref(DistributionSchema),
  users_by_country: ref(DistributionSchema),
  users_by_language: ref(DistributionSchema),
  user_growth: ref(UserGrowthSchema),
  role_statistics: Type.Array(ref(RoleStatisticSchema)),
  recent_sign_ins: Type.Array(ref(RecentSignInSchema))
}, { $id: 'DashboardStatistics', description: 'Every dashboard statistic, computed in one database round trip' })

export const DashboardMeta = Type.Object({
  cache_age_seconds: Type.Integer({ minimum: 0, description: 'How old the numbers are: 0 when just computed, at most DASHBOARD_CACHE_SECONDS' }),
  generated_at: Type.String({ format: 'date-time' })
}, { $id: 'DashboardMeta' })

export type DashboardOverview = Static<typeof DashboardOverviewSchema>
export type Distribution = Static<typeof DistributionSchema>
export type UserGrowth = Static<typeof UserGrowthSchema>
export type RoleStatistic = Static<typeof RoleStatisticSchema>
export type RecentSignIn = Static<typeof RecentSignInSchema>

// The time-zone parameter and check are shared with the activity statistics.
export { resolveTimeZone, TimeZoneParam } from './time-zone.ts'

export const dashboardSchemas = [DashboardOverviewSchema, DistributionSchema, UserGrowthSchema, RoleStatisticSchema, RecentSignInSchema, DashboardStatisticsSchema, DashboardMeta]
