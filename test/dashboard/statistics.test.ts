import t, { type Test } from 'tap'
import { inArray } from 'drizzle-orm'
import { build } from '../helpers/build.ts'
import { bearer, createUser, login } from '../helpers/users.ts'
import { group, user, userGroup, type NewUser } from '../../db/schema/index.ts'
import { defaultGroups, defaultPermissions } from '../../db/defaults.ts'

/**
 * Every dashboard statistic against a seeded set with known answers. "Now" is
 * a fixed instant two years ahead (tokens stay valid), in March after the US
 * switched to daylight time: A = Y-03-18 12:00 UTC.
 */
const Y = new Date().getUTCFullYear() + 2
const A = Date.parse(`${Y}-03-18T12:00:00Z`)
const HOUR = 3_600_000
const DAY = 24 * HOUR
const api = '/api/v1/dashboard'
const env = { LOAD_SHED_EVENT_LOOP_DELAY_MS: '0', ACTIVITY_FLUSH_INTERVAL_MS: '60000' }

interface Seeded { name: string, groups: string[], values: Partial<NewUser> }

// The signed-in admin (created "now" by real time, years before A) is one more
// account: user type user, email, no country, language en, active, email verified.
const seeded: Seeded[] = [
  { name: 'u1', groups: ['business'], values: { user_type: 'business', country: 'FR', language: 'fr', is_email_verified: true, created_at: new Date(`${Y}-03-15T23:30:00Z`), last_login: new Date(A - 2 * HOUR) } },
  { name: 'u2', groups: ['user'], values: { auth_type: 'phone', phone_number: '+33612345678', country: null, language: 'ar', is_phone_verified: true, created_at: new Date(`${Y}-03-16T02:00:00Z`), last_login: new Date(A - 3 * DAY) } },
  { name: 'u3', groups: ['developer'], values: { auth_type: 'user_name', user_name: 'third', user_type: 'developer', country: 'FR', language: 'en', is_active: false, status: 'inactive', created_at: new Date(A - HOUR), last_login: new Date(A - 20 * DAY) } },
  { name: 'u4', groups: ['user'], values: { country: 'EG', language: 'ar', is_active: false, status: 'active', created_at: new Date(`${Y}-02-10T08:00:00Z`) } },
  { name: 'u5', groups: ['admin'], values: { user_type: 'admin', country: 'US', language: 'de', status: 'deleted', is_active: false, created_at: new Date(`${Y}-01-05T08:00:00Z`), last_login: new Date(A - HOUR) } }
]

async function setup (t: Test, extraEnv: Record<string, string> = {}) {
  const clock = { at: A }
  const app = await build(t, { ...env, ...extraEnv }, { now: () => clock.at })
  const admin = await createUser(app, { groups: ['super_admin'] })
  const ids: Record<string, string> = {}
  for (const s of seeded) {
    const [row] = await app.db.insert(user).values({ email: s.values.auth_type === 'phone' ? null : `${s.name}@example.com`, ...s.values }).returning()
    ids[s.name] = row.user_id
    const groups = await app.db.select().from(group).where(inArray(group.codename, s.groups))
    await app.db.insert(userGroup).values(groups.map((g) => ({ user_id: row.user_id, group_id: g.group_id })))
  }
  const tokens = await login(app, admin.email!)
  const get = async (path: string) => {
    const res = await app.inject({ url: `${api}${path}`, headers: bearer(tokens.access_token) })
    t.equal(res.statusCode, 200, `${path}: ${res.statusCode === 200 ? 'ok' : res.body}`)
    return res.json() as { data: any, meta: { cache_age_seconds: number, generated_at: string } }
  }
  return { app, clock, admin, ids, get, headers: bearer(tokens.access_token) }
}

const bucket = (value: string | null, count: number, total: number) => ({ value, count, percentage: Math.round((count / total) * 1000) / 10 })
const permissionsOf = (codename: string) => defaultGroups.find((g) => g.codename === codename)!.permissions.length

function expectedAnswers (adminId: string, ids: Record<string, string>, adminEmail: string) {
  const overview = {
    total_users: 6,
    active_users: 3,
    inactive_users: 2,
    deleted_users: 1,
    email_verified_users: 2,
    phone_verified_users: 1,
    new_users_last_24h: 1,
    new_users_last_7d: 3,
    new_users_last_30d: 3,
    signed_in_last_24h: 2,
    signed_in_last_7d: 3,
    signed_in_last_30d: 4,
    active_sessions: 1,
    groups: defaultGroups.length,
    permissions: defaultPermissions.length
  }
  const byStatus = { total: 6, buckets: [bucket('active', 3, 6), bucket('inactive', 2, 6), bucket('deleted', 1, 6)] }
  const byType = {
    total: 5,
    buckets: [bucket('user', 3, 5), bucket('business', 1, 5), bucket('developer', 1, 5), bucket('accountant', 0, 5), bucket('admin', 0, 5), bucket('super_admin', 0, 5)]
  }
  const byAuthType = { total: 5, buckets: [bucket('email', 3, 5), bucket('phone', 1, 5), bucket('user_name', 1, 5)] }
  // The null bucket is a bucket: accounts without a country, after the named ones of the same size.
  const byCountry = { total: 5, buckets: [bucket('FR', 2, 5), bucket(null, 2, 5), bucket('EG', 1, 5)] }
  const byLanguage = { total: 5, buckets: [bucket('ar', 2, 5), bucket('en', 2, 5), bucket('fr', 1, 5)] }
  const role = (codename: string, members: number, active: number) => ({ codename, members, active_members: active, permissions: permissionsOf(codename), is_system: true, is_active: true })
  const roles = [
    role('user', 2, 1), role('business', 1, 1), role('developer', 1, 0), role('super_admin', 1, 1), role('accountant', 0, 0), role('admin', 0, 0)
  ]
  const recent = [
    { user_id: adminId, email: adminEmail, last_login: new Date(A).toISOString() },
    { user_id: ids.u1, email: 'u1@example.com', last_login: new Date(A - 2 * HOUR).toISOString(), user_type: 'business' },
    { user_id: ids.u2, email: null, last_login: new Date(A - 3 * DAY).toISOString() },
    { user_id: ids.u3, user_name: 'third', last_login: new Date(A - 20 * DAY).toISOString(), user_type: 'developer' }
  ]
  return { overview, byStatus, byType, byAuthType, byCountry, byLanguage, roles, recent }
}

const day = (offset: number) => new Date(Date.parse(`${Y}-03-18T00:00:00Z`) + offset * DAY).toISOString().slice(0, 10)
const growth = (counts: Record<string, number>, totalBefore: number, labels: string[]) => {
  let running = totalBefore
  return labels.map((label) => {
    running += counts[label] ?? 0
    return { period_start: label, new_users: counts[label] ?? 0, total_users: running }
  })
}

t.test('the ten statistics give the known answers', async (t) => {
  const { get, admin, ids } = await setup(t)
  const expected = expectedAnswers(admin.user_id, ids, admin.email!)

  t.same((await get('/overview')).data, expected.overview, 'overview')
  t.same((await get('/users-by-status')).data, expected.byStatus, 'users-by-status')
  t.same((await get('/users-by-type')).data, expected.byType, 'users-by-type (deleted accounts left out)')
  t.same((await get('/users-by-auth-type')).data, expected.byAuthType, 'users-by-auth-type')
  t.same((await get('/users-by-country')).data, expected.byCountry, 'users-by-country, with the null bucket')
  t.same((await get('/users-by-language')).data, expected.byLanguage, 'users-by-language')
  t.match((await get('/role-statistics')).data, expected.roles, 'role-statistics, members of deleted or inactive accounts told apart')
  t.equal((await get('/role-statistics')).data.length, defaultGroups.length)
  const recent = (await get('/recent-sign-ins')).data
  t.match(recent, expected.recent, 'recent-sign-ins: newest first, never-signed-in and deleted accounts left out')
  t.equal(recent.length, 4)
  t.equal((await get('/recent-sign-ins?limit=2')).data.length, 2)

  // Daily, in three time zones: the two accounts created around midnight UTC land on different local days.
  const week = [-6, -5, -4, -3, -2, -1, 0].map(day)
  const daily = (await get('/user-growth?days=7')).data
  t.same(daily, { period: 'daily', days: 7, tz: 'UTC', total_before: 3, buckets: growth({ [day(-3)]: 1, [day(-2)]: 1, [day(0)]: 1 }, 3, week) }, 'UTC, empty days zero-filled')
  t.same((await get('/user-growth?days=7&tz=Asia/Tokyo')).data.buckets, growth({ [day(-2)]: 2, [day(0)]: 1 }, 3, week), 'Tokyo (+9)')
  t.same((await get('/user-growth?days=7&tz=America/Los_Angeles')).data.buckets, growth({ [day(-3)]: 2, [day(0)]: 1 }, 3, week), 'Los Angeles (-7 in daylight time)')
  t.same((await get('/user-growth?days=7&tz=Asia/Kathmandu')).data.buckets, growth({ [day(-2)]: 2, [day(0)]: 1 }, 3, week), 'Kathmandu (+5:45)')

  const monthly = (await get('/user-growth?period=monthly&days=90')).data
  t.same(monthly.buckets, growth({ [`${Y}-01-01`]: 1, [`${Y}-02-01`]: 1, [`${Y}-03-01`]: 3 }, 1, [`${Y - 1}-12-01`, `${Y}-01-01`, `${Y}-02-01`, `${Y}-03-01`]), 'monthly: December empty, deleted accounts counted when created')
  t.equal(monthly.total_before, 1, 'the admin, created years before')

  const weekly = (await get('/user-growth?period=weekly&days=21')).data
  const monday = (iso: string) => { const d = new Date(`${iso}T00:00:00Z`); return new Date(d.getTime() - ((d.getUTCDay() + 6) % 7) * DAY).toISOString().slice(0, 10) }
  const firstWeek = monday(day(-20))
  const weeks: string[] = []
  for (let w = firstWeek; w <= monday(day(0)); w = new Date(Date.parse(`${w}T00:00:00Z`) + 7 * DAY).toISOString().slice(0, 10)) weeks.push(w)
  const perWeek: Record<string, number> = {}
  for (const created of [day(-3), day(-2), day(0)]) perWeek[monday(created)] = (perWeek[monday(created)] ?? 0) + 1
  t.same(weekly.buckets, growth(perWeek, 3, weeks), 'weekly buckets start on Monday, zero-filled')
  t.ok(weekly.buckets.length >= 3 && weekly.buckets.length <= 4)

  const all = await get('/all-statistics?days=7&tz=Asia/Tokyo&limit=10')
  t.same(all.data.overview, expected.overview)
  t.same(all.data.users_by_status, expected.byStatus)
  t.same(all.data.users_by_type, expected.byType)
  t.same(all.data.users_by_auth_type, expected.byAuthType)
  t.same(all.data.users_by_country, expected.byCountry)
  t.same(all.data.users_by_language, expected.byLanguage)
  t.match(all.data.role_statistics, expected.roles)
  t.match(all.data.recent_sign_ins, expected.recent)
  t.same(all.data.user_growth.buckets, growth({ [day(-2)]: 2, [day(0)]: 1 }, 3, week), 'all-statistics takes the growth parameters')
  t.same(all.data.recent_sign_ins, recent, 'the same answer as the single route')
})

t.test('parameters are validated; the permission is view_dashboard', async (t) => {
  const { app, get, headers } = await setup(t)
  for (const query of ['tz=Nowhere/City', 'tz=%2B02:00', 'tz=UTC%2B5', 'period=hourly', 'days=0', 'days=5000']) {
    const res = await app.inject({ url: `${api}/user-growth?${query}`, headers })
    t.equal(res.statusCode, 400, query)
    t.equal(res.json().error.code, 'VALIDATION_ERROR')
  }
  t.equal((await get('/user-growth?tz=europe/paris')).data.tz, 'Europe/Paris', 'the canonical spelling of a zone')
  t.equal((await app.inject({ url: `${api}/recent-sign-ins?limit=101`, headers })).statusCode, 400)

  const plain = await createUser(app)
  const tokens = await login(app, plain.email!)
  const business = await createUser(app, { groups: ['business'] })
  const businessTokens = await login(app, business.email!)
  for (const path of ['/overview', '/users-by-status', '/users-by-type', '/users-by-auth-type', '/users-by-country', '/users-by-language', '/user-growth', '/role-statistics', '/recent-sign-ins', '/all-statistics']) {
    t.equal((await app.inject({ url: `${api}${path}`, headers: bearer(tokens.access_token) })).statusCode, 403, `${path} needs view_dashboard`)
    t.equal((await app.inject({ url: `${api}${path}`, headers: bearer(businessTokens.access_token) })).statusCode, 200, `${path} for a business user`)
  }
})

t.test('answers are cached for DASHBOARD_CACHE_SECONDS, and meta says how old they are', async (t) => {
  const { app, clock, get } = await setup(t)
  const first = await get('/overview')
  t.equal(first.meta.cache_age_seconds, 0)
  t.equal(first.meta.generated_at, new Date(A).toISOString())
  await createUser(app)

  clock.at += 12_500
  const cached = await get('/overview')
  t.equal(cached.meta.cache_age_seconds, 12, 'served from the cache')
  t.equal(cached.data.total_users, first.data.total_users, 'the cached numbers')
  t.equal(cached.meta.generated_at, first.meta.generated_at)
  t.equal((await get('/user-growth?days=7')).meta.cache_age_seconds, 0, 'each statistic and parameter set has its own entry')
  t.equal((await get('/user-growth?days=8')).meta.cache_age_seconds, 0)

  clock.at += 20_000
  const fresh = await get('/overview')
  t.equal(fresh.meta.cache_age_seconds, 0, 'recomputed after 30 s')
  t.equal(fresh.data.total_users, first.data.total_users + 1)
})

t.test('DASHBOARD_CACHE_SECONDS=0 computes every time', async (t) => {
  const { app, get } = await setup(t, { DASHBOARD_CACHE_SECONDS: '0' })
  const before = (await get('/users-by-status')).data.total
  await createUser(app)
  const after = await get('/users-by-status')
  t.equal(after.data.total, before + 1)
  t.equal(after.meta.cache_age_seconds, 0)
})

t.test('each statistic is one SQL statement, and all-statistics is one round trip', async (t) => {
  const { app, get } = await setup(t, { DASHBOARD_CACHE_SECONDS: '0' })
  const db = app.db as unknown as { execute: (...args: unknown[]) => Promise<unknown> }
  const original = db.execute
  let statements = 0
  db.execute = function (this: unknown, ...args: unknown[]) {
    statements++
    return original.apply(this, args)
  }
  t.teardown(() => { db.execute = original })
  for (const path of ['/overview', '/users-by-status', '/users-by-type', '/users-by-auth-type', '/users-by-country', '/users-by-language', '/user-growth?period=weekly', '/role-statistics', '/recent-sign-ins', '/all-statistics']) {
    statements = 0
    await get(path)
    t.equal(statements, 1, `${path}: one statement`)
  }
})
