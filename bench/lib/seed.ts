import { sql } from 'drizzle-orm'
import { executeRows, type DatabaseHandle } from '../../db/client.ts'
import { user } from '../../db/schema/index.ts'
import { hashPassword } from '../../workers/password.ts'

/**
 * Bench data written straight into the database with a few set-based SQL
 * statements (seconds for a million rows, where the API would take minutes):
 * users, and activity_log rows spread over them like a live system's.
 */

/** What a row of the activity log is about; `weight` is its share in percent. */
interface EventKind {
  action: string
  module: string
  level: 'info' | 'warning' | 'error'
  endpoint: string
  method: string
  status: number
  weight: number
  metadata: string | null
}

const P = '/api/v1'
const eventKinds: EventKind[] = [
  { action: 'request', module: 'settings', level: 'info', endpoint: `${P}/auth/token-info`, method: 'POST', status: 200, weight: 22, metadata: null },
  { action: 'request', module: 'groups', level: 'info', endpoint: `${P}/groups/:group_id`, method: 'PUT', status: 200, weight: 4, metadata: '{"params":{"group_id":"00000000-0000-4000-8000-000000000000"}}' },
  { action: 'request', module: 'users', level: 'warning', endpoint: `${P}/users/:user_id/status`, method: 'PUT', status: 403, weight: 3, metadata: '{"error":"AUTH_FORBIDDEN"}' },
  { action: 'request', module: 'upload', level: 'error', endpoint: `${P}/upload/media`, method: 'POST', status: 500, weight: 1, metadata: '{"error":"INTERNAL_ERROR"}' },
  { action: 'login_success', module: 'auth', level: 'info', endpoint: `${P}/auth/login-with-password`, method: 'POST', status: 200, weight: 20, metadata: '{"method":"password","rehashed":false}' },
  { action: 'token_refresh', module: 'auth', level: 'info', endpoint: `${P}/auth/refresh-token`, method: 'POST', status: 200, weight: 20, metadata: '{"within_grace":false}' },
  { action: 'login_failed', module: 'auth', level: 'warning', endpoint: `${P}/auth/login-with-password`, method: 'POST', status: 401, weight: 8, metadata: '{"method":"password"}' },
  { action: 'account_locked', module: 'auth', level: 'warning', endpoint: `${P}/auth/login-with-password`, method: 'POST', status: 429, weight: 1, metadata: '{"seconds":30}' },
  { action: 'logout', module: 'auth', level: 'info', endpoint: `${P}/auth/logout`, method: 'POST', status: 200, weight: 6, metadata: '{"scope":"current","revoked_sessions":1}' },
  { action: 'setting_update', module: 'settings', level: 'info', endpoint: `${P}/settings/update-theme`, method: 'POST', status: 200, weight: 10, metadata: '{"field":"theme","value":"dark"}' },
  { action: 'profile_update', module: 'settings', level: 'info', endpoint: `${P}/settings/profile`, method: 'PUT', status: 200, weight: 5, metadata: '{"fields":["first_name"]}' }
]

const userAgents = [
  { ua: 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36', device: 'desktop', browser: 'Chrome 126', os: 'Windows 10' },
  { ua: 'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15', device: 'desktop', browser: 'Safari 17', os: 'macOS 14.5' },
  { ua: 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1', device: 'mobile', browser: 'Mobile Safari 17', os: 'iOS 17.5' },
  { ua: 'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36', device: 'mobile', browser: 'Chrome 126', os: 'Android 14' },
  { ua: 'okhttp/4.12.0', device: 'unknown', browser: 'okhttp 4', os: 'unknown' }
]

const literal = (value: string | null) => value === null ? 'null' : `'${value.replaceAll("'", "''")}'`

/** A VALUES list of the event kinds with cumulative percent ranges [lo, hi). */
function eventKindsValues (): string {
  let lo = 0
  const rows = eventKinds.map((k) => {
    const row = `(${lo}, ${lo + k.weight}, ${literal(k.action)}, ${literal(k.module)}, ${literal(k.level)}, ${literal(k.endpoint)}, ${literal(k.method)}, ${k.status}, ${literal(k.metadata)}::jsonb)`
    lo += k.weight
    return row
  })
  if (lo !== 100) throw new Error(`event kind weights add up to ${lo}, not 100`)
  return rows.join(',\n')
}

const userAgentValues = () => userAgents.map((u, i) => `(${i}, ${literal(u.ua)}, ${literal(u.device)}, ${literal(u.browser)}, ${literal(u.os)})`).join(',\n')

/** `count` plain users (no password, no group), created over the last year. */
export async function seedUsers (handle: DatabaseHandle, count: number): Promise<void> {
  await handle.db.transaction(async (tx) => {
    await tx.execute(sql`select setseed(0.17)`)
    await tx.execute(sql`
      insert into "user" (email, user_name, first_name, last_name, country, language, timezone, is_email_verified, created_at, last_login)
      select 'bench-user-' || i || '@example.com', 'bench_user_' || i, 'Bench', 'User ' || i,
             (array['US', 'DE', 'FR', 'IN', 'BR', 'JP', null])[1 + i % 7],
             (array['en', 'en', 'fr', 'de', 'es'])[1 + i % 5],
             (array['UTC', 'Europe/Paris', 'America/New_York', 'Asia/Kolkata'])[1 + i % 4],
             i % 3 <> 0,
             now() - random() * interval '365 days',
             case when i % 4 <> 0 then now() - random() * interval '30 days' end
      from generate_series(1, ${count}::int) as g(i)
    `)
  })
}

/**
 * The account the login scenarios log in to (Argon2id with the default
 * parameters, as the app hashes). Not the admin who reads: every login adds a
 * session, and the admin's list of sessions must not grow with the login load.
 */
export async function seedLoginUser (handle: DatabaseHandle, email: string, password: string): Promise<void> {
  await handle.db.insert(user).values({ email, password: await hashPassword(password), auth_type: 'email', is_email_verified: true })
}

/**
 * `count` activity rows over the last 90 days: 95% by a user (a few users far
 * more active than most), 5% anonymous (failed logins and the like); IP
 * addresses from the documentation ranges, five user agents, the event kinds
 * above in their proportions. Then VACUUM ANALYZE, as a long-lived table would be.
 */
export async function seedActivity (handle: DatabaseHandle, count: number): Promise<void> {
  await handle.db.transaction(async (tx) => {
    // Building the indexes once over the filled table is several times faster
    // than updating them row by row; they come back exactly as the migrations made them.
    const indexes = await executeRows<{ name: string, definition: string }>(tx, sql`
      select indexname as name, indexdef as definition from pg_indexes
      where schemaname = current_schema() and tablename = 'activity_log'
        and indexname not in (select conname from pg_constraint where conrelid = 'activity_log'::regclass)`)
    const [primaryKey] = await executeRows<{ name: string, definition: string }>(tx, sql`
      select conname as name, pg_get_constraintdef(oid) as definition from pg_constraint
      where conrelid = 'activity_log'::regclass and contype = 'p'`)
    for (const index of indexes) await tx.execute(sql.raw(`drop index "${index.name}"`))
    if (primaryKey) await tx.execute(sql.raw(`alter table activity_log drop constraint "${primaryKey.name}"`))
    await tx.execute(sql`set local maintenance_work_mem = '256MB'`)
    await tx.execute(sql`select setseed(0.42)`)
    await tx.execute(sql`
      with kinds (lo, hi, action, module, level, endpoint, method, status, metadata) as (values ${sql.raw(eventKindsValues())}),
      agents (n, ua, device, browser, os) as (values ${sql.raw(userAgentValues())}),
      users as (select array_agg(user_id order by created_at, user_id) as ids from "user"),
      draws as (
        select i, floor(random() * 100)::int as k, random() as t, random() as anon,
               floor(power(random(), 3) * (select cardinality(ids) from users))::int as u
        from generate_series(1, ${count}::int) as g(i)
      )
      insert into activity_log (user_id, level, action, module, ip_address, user_agent, device, browser, os, endpoint, method,
                                status_code, request_id, session_id, target_user_id, duration_ms, metadata, created_at)
      select actor.id, kinds.level, kinds.action, kinds.module,
             case when actor.id is null then '203.0.113.' || (1 + d.i % 254)
                  else (case when d.u % 2 = 0 then '198.51.100.' else '192.0.2.' end) || (1 + d.u % 254) end,
             agents.ua, agents.device, agents.browser, agents.os, kinds.endpoint, kinds.method, kinds.status,
             md5(d.i::text), case when actor.id is not null then md5('session' || d.u || (d.i / 50))::uuid end,
             actor.id, 1 + floor(d.t * 1000)::int % 120, kinds.metadata,
             now() - d.t * interval '90 days'
      from draws d
      join kinds on d.k >= kinds.lo and d.k < kinds.hi
      join agents on agents.n = d.u % ${userAgents.length}::int
      cross join users
      cross join lateral (select case when d.anon < 0.05 then null else users.ids[1 + d.u] end as id) actor
    `)
    if (primaryKey) await tx.execute(sql.raw(`alter table activity_log add constraint "${primaryKey.name}" ${primaryKey.definition}`))
    // On a partitioned table pg_indexes says `ON ONLY` (the parent alone); built without it, each partition gets its index.
    for (const index of indexes) await tx.execute(sql.raw(index.definition.replace(' ON ONLY ', ' ON ')))
  })
  await handle.db.execute(sql`vacuum analyze activity_log`)
}
