/**
 * `npm run bench:upgrade`: how long the in-place upgrade of an original
 * Express/Prisma database takes with a large activity log.
 *
 * Creates a scratch database on TEST_DATABASE_URL's server (default
 * postgres://postgres@127.0.0.1:5432/postgres; named like the test databases,
 * t_<base36 time>_<hex>, so a crashed run is cleaned up with them), loads the
 * test fixture (test/db/fixtures/original.sql: the original tables, their
 * indexes, 12 users), adds BENCH_UPGRADE_ROWS activity rows (default 1,000,000)
 * generated inside PostgreSQL with generate_series (mixed-case levels, non-UUID
 * session ids, platform and error_details, as the original wrote them), then
 * times migrateDatabase() (upgrade + migrations, one transaction) and prints
 * the time per step. The database is dropped at the end.
 */
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import postgres from 'postgres'
import { openDatabase } from '../db/client.ts'
import { migrateDatabase } from '../db/migrate.ts'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const serverUrl = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
const rows = Number(process.env.BENCH_UPGRADE_ROWS ?? 1_000_000)

async function main (): Promise<void> {
  const name = `t_${Math.floor(Date.now() / 1000).toString(36)}_${randomBytes(5).toString('hex')}`
  const url = new URL(serverUrl)
  url.pathname = `/${name}`
  const admin = postgres(serverUrl, { max: 1, onnotice: () => {} })
  await admin.unsafe(`create database "${name}" template template0`)
  const sql = postgres(url.toString(), { max: 1, onnotice: () => {} })
  try {
    await sql.unsafe(readFileSync(path.join(root, 'test', 'db', 'fixtures', 'original.sql'), 'utf8'))
    let started = performance.now()
    await sql.unsafe(`
      insert into activity_log (log_id, user_id, level, message, action, module, ip_address, user_agent, platform, endpoint, method,
        status_code, request_id, session_id, metadata, error_details, duration_ms, created_at)
      select gen_random_uuid(),
        (select array_agg(user_id order by user_id) from "user")[1 + i % 12],
        (array['info', 'INFO', 'warn', 'Error', 'debug', 'critical'])[1 + i % 6],
        'event ' || i, (array['login', 'logout', 'profile_update', 'otp_sent'])[1 + i % 4], (array['auth', 'user', 'media'])[1 + i % 3],
        '203.0.113.' || (i % 250), 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36',
        case when i % 3 = 0 then 'ios' end, '/api/v1/auth/login', 'POST', 200, 'req-' || i,
        case when i % 2 = 0 then gen_random_uuid()::text else 'sess-' || i end,
        jsonb_build_object('attempt', i % 5, 'method', 'password'),
        case when i % 10 = 0 then '{"code": "E_TIMEOUT", "retry": true}'::jsonb end,
        i % 1000, timestamp '2020-01-01' + make_interval(secs => i * 60)
      from generate_series(1, ${rows}) as i`)
    await sql.unsafe('analyze')
    console.log(`generated ${rows.toLocaleString('en')} original activity rows in ${((performance.now() - started) / 1000).toFixed(1)} s`)

    const handle = await openDatabase({ url: url.toString(), dataDir: '', poolMax: 1 })
    try {
      started = performance.now()
      const { upgrade } = await migrateDatabase(handle, { log: () => {} })
      const seconds = (performance.now() - started) / 1000
      const [{ n }] = await sql<Array<{ n: number }>>`select count(*)::int as n from activity_log`
      console.log(`upgraded: ${n.toLocaleString('en')} activity rows in ${seconds.toFixed(1)} s (upgrade and migrations, one transaction)`)
      console.log(`per step (ms): ${Object.entries(upgrade?.timings ?? {}).map(([step, ms]) => `${step} ${ms}`).join(', ')}`)
      const [{ version }] = await sql<Array<{ version: string }>>`select current_setting('server_version') as version`
      console.log(`PostgreSQL ${version}`)
    } finally {
      await handle.close()
    }
  } finally {
    await sql.end({ timeout: 5 })
    await admin.unsafe(`drop database if exists "${name}" with (force)`)
    await admin.end({ timeout: 5 })
  }
}

main().catch((error: unknown) => {
  console.error(error)
  process.exitCode = 1
})
