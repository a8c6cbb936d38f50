import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import postgres from 'postgres'

/**
 * Shared by the activity_log benches (bench/activity-partitions.ts): scratch
 * databases, rows generated in SQL the way the writer shapes them, and the bulk
 * load that drops the secondary indexes and builds them again afterwards.
 */

export const serverUrl = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
export const DAY = 86_400_000
export const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`

/** A database of its own on TEST_DATABASE_URL's server, named like the test databases (a crashed run is cleaned up with them). */
export async function scratchDatabase () {
  const name = `t_${Math.floor(Date.now() / 1000).toString(36)}_${randomBytes(5).toString('hex')}`
  const url = new URL(serverUrl)
  url.pathname = `/${name}`
  const admin = postgres(serverUrl, { max: 1, onnotice: () => {} })
  await admin.unsafe(`create database "${name}" template template0`)
  return {
    name,
    url: url.toString(),
    drop: async () => {
      await admin.unsafe(`drop database if exists "${name}" with (force)`)
      await admin.end()
    }
  }
}

/** A random-looking UUIDv7 for row i at time `ts` (SQL expressions), as the writer makes them. */
const v7 = (ts: string, i: string) => `(lpad(to_hex((extract(epoch from ${ts}) * 1000)::bigint), 12, '0') || '7' || substr(md5(${i}::text), 1, 3) || '8' || substr(md5(${i}::text), 4, 15))::uuid`

/**
 * Rows i = first..last, spaced `stepMs` apart going back from `newest`. One row in
 * ten has an actor, spread over the users whose email starts with "bench" in
 * email order, so the first of them is the actor of one row in a thousand.
 */
export function generateRows (first: number, last: number, newest: Date, stepMs: number) {
  const ts = `(timestamptz '${newest.toISOString()}' - i * interval '${stepMs} milliseconds')`
  return `insert into activity_log (log_id, user_id, level, action, module, ip_address, endpoint, method, status_code, duration_ms, created_at)
    select ${v7(ts, 'i')},
      case when i % 10 = 0 then (select array_agg(user_id order by email) from "user" where email like 'bench%')[1 + (i / 10) % 100] end,
      (array['info', 'info', 'info', 'warning', 'error'])[1 + i % 5],
      (array['request', 'login', 'logout', 'refresh', 'profile_update', 'otp_sent', 'password_change', 'upload'])[1 + i % 8],
      (array['auth', 'users', 'media', 'activity', 'rbac', 'sessions'])[1 + i % 6],
      '203.0.113.' || (i % 250), '/api/v1/auth/login', 'POST', 200, i % 200, ${ts}
    from generate_series(${first}, ${last}) as i`
}

/**
 * Lowers the CPU priority of this connection's backend (the bulk load shares the
 * machine): `nice` on the bench process does not reach the PostgreSQL backend that
 * does the work. Only when the server runs on this machine as a user we may renice.
 */
export async function niceBackend (sql: postgres.Sql, niceness = 10): Promise<void> {
  const [{ pid }] = await sql<Array<{ pid: number }>>`select pg_backend_pid() as pid`
  try {
    execFileSync('renice', ['-n', String(niceness), '-p', String(pid)], { stdio: 'ignore' })
  } catch {
    // Another machine, or not allowed: the load runs at normal priority.
  }
}

/**
 * Loads rows first..last in statements of `chunk` rows. With `bulk`, the secondary
 * indexes of `table` are dropped first and built again at the end (sorted builds
 * instead of one index insert per row and index), as a bulk load does; the
 * primary key stays. On a partitioned table the parent's indexes are dropped and
 * built, which covers every partition. Returns the milliseconds it took in all.
 */
export async function loadRows (sql: postgres.Sql, rows: { first: number, last: number, newest: Date, stepMs: number }, options: { bulk: boolean, chunk?: number, onChunk?: (done: number) => void }): Promise<number> {
  const started = performance.now()
  const chunk = options.chunk ?? 1_000_000
  const indexes = options.bulk
    ? await sql<Array<{ name: string, def: string }>>`
        select indexname as name, indexdef as def from pg_indexes
        where schemaname = 'public' and tablename = 'activity_log'
          and indexname not in (select conname from pg_constraint where conrelid = 'public.activity_log'::regclass)`
    : []
  for (const index of indexes) await sql.unsafe(`drop index "${index.name}"`)
  for (let from = rows.first; from <= rows.last; from += chunk) {
    const to = Math.min(rows.last, from + chunk - 1)
    await sql.unsafe(generateRows(from, to, rows.newest, rows.stepMs))
    options.onChunk?.(to)
  }
  // pg_indexes shows a partitioned table's index as "ON ONLY", which would not build the partitions' ones.
  for (const index of indexes) await sql.unsafe(index.def.replace(' ON ONLY ', ' ON '))
  return performance.now() - started
}

export function median (values: number[]): number {
  const sorted = values.slice().sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]
}
