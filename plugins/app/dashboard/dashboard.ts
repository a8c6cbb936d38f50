import fp from 'fastify-plugin'
import { sql, type SQL } from 'drizzle-orm'
import { executeRows } from '../../../db/client.ts'
import { PG_INVALID_PARAMETER_VALUE, pgError } from '../../../db/errors.ts'
import { authTypes, userTypes } from '../../../db/schema/users.ts'
import { AppError } from '../../../schemas/errors.ts'
import type { DashboardOverview, Distribution, GrowthPeriod, RecentSignIn, RoleStatistic, UserGrowth } from '../../../schemas/dashboard.ts'

/**
 * The dashboard statistics. Each one is a single SQL statement (aggregates,
 * FILTER clauses, one grouped join; never a query per row), and `all` nests
 * every one of them in one statement, so the whole dashboard is one round trip.
 * Results are cached in the shared store for DASHBOARD_CACHE_SECONDS.
 *
 * Counting rules: by-status counts every account; the other distributions
 * leave deleted accounts out; growth counts accounts by creation time, deleted
 * or not (they did sign up). "Active" means status active and not deactivated,
 * the same rule login applies.
 */
export interface GrowthOptions { period: GrowthPeriod, days: number, tz: string }
export interface AllOptions extends GrowthOptions { recentLimit: number }

export interface Cached<T> { data: T, cacheAgeSeconds: number, generatedAt: Date }

export interface DashboardService {
  overview: () => Promise<Cached<DashboardOverview>>
  usersByStatus: () => Promise<Cached<Distribution>>
  usersByType: () => Promise<Cached<Distribution>>
  usersByAuthType: () => Promise<Cached<Distribution>>
  usersByCountry: () => Promise<Cached<Distribution>>
  usersByLanguage: () => Promise<Cached<Distribution>>
  userGrowth: (options: GrowthOptions) => Promise<Cached<UserGrowth>>
  roleStatistics: () => Promise<Cached<RoleStatistic[]>>
  recentSignIns: (limit: number) => Promise<Cached<RecentSignIn[]>>
  all: (options: AllOptions) => Promise<Cached<AllStatistics>>
}

export interface AllStatistics {
  overview: DashboardOverview
  users_by_status: Distribution
  users_by_type: Distribution
  users_by_auth_type: Distribution
  users_by_country: Distribution
  users_by_language: Distribution
  user_growth: UserGrowth
  role_statistics: RoleStatistic[]
  recent_sign_ins: RecentSignIn[]
}

declare module 'fastify' {
  interface FastifyInstance { dashboard: DashboardService }
}

type Row = Record<string, unknown>

const statusExpression = sql`case when status = 'deleted' then 'deleted' when status = 'active' and is_active then 'active' else 'inactive' end`
const notDeleted = sql`status <> 'deleted'`

// --- statements ------------------------------------------------------------

const at = (now: Date) => sql`${now.toISOString()}::timestamptz`

function overviewQuery (now: Date): SQL {
  const since = (interval: string) => sql`${at(now)} - ${interval}::interval`
  const created = (interval: string) => sql`created_at > ${since(interval)} and created_at <= ${at(now)}`
  const signedIn = (interval: string) => sql`last_login > ${since(interval)} and last_login <= ${at(now)}`
  return sql`select
    count(*)::int as total_users,
    count(*) filter (where status = 'active' and is_active)::int as active_users,
    count(*) filter (where ${notDeleted} and not (status = 'active' and is_active))::int as inactive_users,
    count(*) filter (where status = 'deleted')::int as deleted_users,
    count(*) filter (where ${notDeleted} and is_email_verified)::int as email_verified_users,
    count(*) filter (where ${notDeleted} and is_phone_verified)::int as phone_verified_users,
    count(*) filter (where ${created('24 hours')})::int as new_users_last_24h,
    count(*) filter (where ${created('7 days')})::int as new_users_last_7d,
    count(*) filter (where ${created('30 days')})::int as new_users_last_30d,
    count(*) filter (where ${notDeleted} and ${signedIn('24 hours')})::int as signed_in_last_24h,
    count(*) filter (where ${notDeleted} and ${signedIn('7 days')})::int as signed_in_last_7d,
    count(*) filter (where ${notDeleted} and ${signedIn('30 days')})::int as signed_in_last_30d,
    (select count(*)::int from "session" where revoked_at is null and expires_at > ${at(now)}) as active_sessions,
    (select count(*)::int from "group") as groups,
    (select count(*)::int from "permission") as permissions
  from "user"`
}

/** value + count per distinct value of `expression` (NULL is a bucket of its own). */
function distributionQuery (expression: SQL, where?: SQL): SQL {
  return sql`select value, count(*)::int as count from (select ${expression} as value from "user"${where ? sql` where ${where}` : sql``}) u group by value`
}

const distributions = {
  users_by_status: { query: () => distributionQuery(statusExpression), known: ['active', 'inactive', 'deleted'] },
  users_by_type: { query: () => distributionQuery(sql`user_type`, notDeleted), known: userTypes },
  users_by_auth_type: { query: () => distributionQuery(sql`auth_type`, notDeleted), known: authTypes },
  users_by_country: { query: () => distributionQuery(sql`country`, notDeleted), known: [] },
  users_by_language: { query: () => distributionQuery(sql`language`, notDeleted), known: [] }
} as const satisfies Record<string, { query: () => SQL, known: readonly string[] }>
type DistributionName = keyof typeof distributions

const units = { daily: 'day', weekly: 'week', monthly: 'month' } as const

/**
 * Buckets of the window in the time zone, generated (so empty ones are there
 * with 0) and joined to the accounts created in each. Local timestamps make
 * the buckets follow the zone's calendar, DST changes included.
 */
function growthQuery (now: Date, { period, days, tz }: GrowthOptions): SQL {
  const unit = units[period]
  const local = sql`(${at(now)} at time zone ${tz})`
  return sql`with bounds as (
      select date_trunc(${unit}, ${local} - make_interval(days => ${days - 1}::int)) as first_local,
             date_trunc(${unit}, ${local}) as last_local
    ), counts as (
      select date_trunc(${unit}, u.created_at at time zone ${tz}) as bucket, count(*) as n
      from "user" u, bounds b
      where u.created_at >= (b.first_local at time zone ${tz}) and u.created_at <= ${at(now)}
      group by 1
    )
    select to_char(s.bucket, 'YYYY-MM-DD') as period_start,
      coalesce(c.n, 0)::int as new_users,
      (select count(*)::int from "user" u, bounds b where u.created_at < (b.first_local at time zone ${tz})) as total_before
    from bounds b
    cross join lateral generate_series(b.first_local, b.last_local, ${`1 ${unit}`}::interval) as s(bucket)
    left join counts c on c.bucket = s.bucket`
}

/** Groups with their member and permission counts: one grouped join, permissions by their primary key. */
function rolesQuery (): SQL {
  return sql`select g.group_id, g.codename, g.name, g.is_system, g.is_active,
      count(u.user_id) filter (where u.status <> 'deleted')::int as members,
      count(u.user_id) filter (where u.status = 'active' and u.is_active)::int as active_members,
      (select count(*)::int from "group_permission" gp where gp.group_id = g.group_id) as permissions
    from "group" g
    left join "user_group" ug on ug.group_id = g.group_id
    left join "user" u on u.user_id = ug.user_id
    group by g.group_id`
}

function recentQuery (limit: number): SQL {
  return sql`select user_id, email, user_name, first_name, last_name, user_type, last_login
    from "user" where last_login is not null and ${notDeleted}
    order by last_login desc limit ${limit}`
}

// --- shaping ---------------------------------------------------------------

const iso = (value: unknown) => new Date(value as string | Date).toISOString()
const byCountThenValue = (a: { value: string | null, count: number }, b: { value: string | null, count: number }) =>
  b.count - a.count || (a.value === null ? 1 : b.value === null ? -1 : a.value.localeCompare(b.value))

function toDistribution (rows: Row[], known: readonly string[]): Distribution {
  const counts = new Map<string | null, number>(known.map((k) => [k, 0]))
  for (const r of rows) counts.set(r.value === null ? null : String(r.value), Number(r.count))
  const total = [...counts.values()].reduce((a, b) => a + b, 0)
  const buckets = [...counts].map(([value, count]) => ({ value, count, percentage: total === 0 ? 0 : Math.round((count / total) * 1000) / 10 }))
  return { total, buckets: buckets.sort(byCountThenValue) }
}

function toGrowth (rows: Row[], options: GrowthOptions): UserGrowth {
  const sorted = [...rows].sort((a, b) => String(a.period_start).localeCompare(String(b.period_start)))
  const totalBefore = sorted.length > 0 ? Number(sorted[0].total_before) : 0
  let running = totalBefore
  return {
    ...options,
    total_before: totalBefore,
    buckets: sorted.map((r) => {
      running += Number(r.new_users)
      return { period_start: String(r.period_start), new_users: Number(r.new_users), total_users: running }
    })
  }
}

const toRoles = (rows: Row[]): RoleStatistic[] => rows.map((r) => ({
  group_id: String(r.group_id),
  codename: String(r.codename),
  name: String(r.name),
  is_system: Boolean(r.is_system),
  is_active: Boolean(r.is_active),
  members: Number(r.members),
  active_members: Number(r.active_members),
  permissions: Number(r.permissions)
})).sort((a, b) => b.members - a.members || a.codename.localeCompare(b.codename))

const toRecent = (rows: Row[]): RecentSignIn[] => rows.map((r) => ({
  user_id: String(r.user_id),
  email: (r.email as string | null) ?? null,
  user_name: (r.user_name as string | null) ?? null,
  first_name: (r.first_name as string | null) ?? null,
  last_name: (r.last_name as string | null) ?? null,
  user_type: String(r.user_type),
  last_login: iso(r.last_login)
})).sort((a, b) => b.last_login.localeCompare(a.last_login))

const toOverview = (row: Row): DashboardOverview => Object.fromEntries(Object.entries(row).map(([k, v]) => [k, Number(v)])) as DashboardOverview

/** PostgreSQL may lack a zone that ICU knows (or the other way round): that is the caller's 400, not a 500. */
function zoneError (error: unknown): boolean {
  const pg = pgError(error)
  return pg?.code === PG_INVALID_PARAMETER_VALUE && /time zone/i.test(pg.message ?? '')
}

export default fp(async (fastify) => {
  const { db, store, config } = fastify
  const ttlMs = config.DASHBOARD_CACHE_SECONDS * 1000

  const run = async (query: SQL) => {
    try {
      return await executeRows<Row>(db, query)
    } catch (error) {
      if (zoneError(error)) throw new AppError('VALIDATION_ERROR', { details: [{ field: 'querystring/tz', message: 'is not a time zone the database knows' }], cause: error })
      throw error
    }
  }

  /**
   * Served from the shared store while younger than the TTL. The age is
   * measured with the app clock, so it is exact even when the store's own
   * expiry (real time) has not fired yet. A store failure never fails the
   * dashboard: the numbers are computed instead.
   */
  async function cached<T> (key: string, compute: (now: Date) => Promise<T>): Promise<Cached<T>> {
    const now = fastify.now()
    const storeKey = `dash:${key}`
    if (ttlMs > 0) {
      const hit = await store.get(storeKey).catch(() => null)
      if (hit) {
        const entry = JSON.parse(hit) as { at: number, data: T }
        const age = now - entry.at
        if (age >= 0 && age < ttlMs) return { data: entry.data, cacheAgeSeconds: Math.floor(age / 1000), generatedAt: new Date(entry.at) }
      }
    }
    const data = await compute(new Date(now))
    if (ttlMs > 0) await store.set(storeKey, JSON.stringify({ at: now, data }), ttlMs).catch((error) => fastify.log.warn({ err: error }, 'dashboard cache write failed'))
    return { data, cacheAgeSeconds: 0, generatedAt: new Date(now) }
  }

  const distribution = (name: DistributionName) => () => cached(name, async () => toDistribution(await run(distributions[name].query()), distributions[name].known))

  const service: DashboardService = {
    overview: () => cached('overview', async (now) => toOverview((await run(overviewQuery(now)))[0])),
    usersByStatus: distribution('users_by_status'),
    usersByType: distribution('users_by_type'),
    usersByAuthType: distribution('users_by_auth_type'),
    usersByCountry: distribution('users_by_country'),
    usersByLanguage: distribution('users_by_language'),
    userGrowth: (options) => cached(`growth:${options.period}:${options.days}:${options.tz}`, async (now) => toGrowth(await run(growthQuery(now, options)), options)),
    roleStatistics: () => cached('roles', async () => toRoles(await run(rolesQuery()))),
    recentSignIns: (limit) => cached(`recent:${limit}`, async () => toRecent(await run(recentQuery(limit)))),
    all: (options) => cached(`all:${options.period}:${options.days}:${options.tz}:${options.recentLimit}`, async (now) => {
      const list = (query: SQL) => sql`(select coalesce(jsonb_agg(x), '[]'::jsonb) from (${query}) x)`
      const [row] = await run(sql`select
        (select to_jsonb(x) from (${overviewQuery(now)}) x) as overview,
        ${list(distributions.users_by_status.query())} as users_by_status,
        ${list(distributions.users_by_type.query())} as users_by_type,
        ${list(distributions.users_by_auth_type.query())} as users_by_auth_type,
        ${list(distributions.users_by_country.query())} as users_by_country,
        ${list(distributions.users_by_language.query())} as users_by_language,
        ${list(growthQuery(now, options))} as user_growth,
        ${list(rolesQuery())} as role_statistics,
        ${list(recentQuery(options.recentLimit))} as recent_sign_ins`)
      const json = (key: string) => (typeof row[key] === 'string' ? JSON.parse(row[key]) : row[key]) as Row[]
      const { recentLimit: _limit, ...growth } = options
      return {
        overview: toOverview(json('overview') as unknown as Row),
        users_by_status: toDistribution(json('users_by_status'), distributions.users_by_status.known),
        users_by_type: toDistribution(json('users_by_type'), distributions.users_by_type.known),
        users_by_auth_type: toDistribution(json('users_by_auth_type'), distributions.users_by_auth_type.known),
        users_by_country: toDistribution(json('users_by_country'), distributions.users_by_country.known),
        users_by_language: toDistribution(json('users_by_language'), distributions.users_by_language.known),
        user_growth: toGrowth(json('user_growth'), growth),
        role_statistics: toRoles(json('role_statistics')),
        recent_sign_ins: toRecent(json('recent_sign_ins'))
      }
    })
  }
  fastify.decorate('dashboard', service)
}, { name: 'dashboard', dependencies: ['db', 'store'] })
