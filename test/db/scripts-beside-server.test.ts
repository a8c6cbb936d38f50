import { spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { hostname, tmpdir } from 'node:os'
import path from 'node:path'
import { and, eq } from 'drizzle-orm'
import t from 'tap'
import { openDatabase } from '../../db/client.ts'
import { appliedState } from '../../db/migrate.ts'
import { group, user, userGroup } from '../../db/schema/index.ts'
import { createEmbeddedDataDir, createTestDatabase, testDatabaseMode } from '../helpers/database.ts'
import { root, startServer } from '../helpers/processes.ts'

// issue 18: `db:migrate`, `db:seed` and `create-admin` run while `npm start`
// runs. PostgreSQL serves them beside the server; the embedded PGlite serves
// one process, so the server records in its folder's lock what it applied at
// start and the scripts answer from that (db/cli.ts, db/pglite-lock.ts).

const tsx = import.meta.resolve('tsx')
const scratch = mkdtempSync(path.join(tmpdir(), 'scripts-beside-'))
t.teardown(() => rmSync(scratch, { recursive: true, force: true }))
const mine = appliedState()
const fastHashing = { ARGON2_MEMORY_KIB: '1024', ARGON2_TIME_COST: '1', HASH_POOL_THREADS: '1' }

interface Run { code: number | null, stdout: string, stderr: string }

/** Runs one of the db/ scripts as `npm run` does (tsx), in a folder without a .env, with `stdin` piped in. */
function script (name: 'migrate' | 'seed' | 'create-admin', env: Record<string, string>, args: string[] = [], stdin = ''): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', tsx, path.join(root, 'db', `${name}.ts`), ...args], {
      cwd: scratch,
      env: { PATH: process.env.PATH ?? '', NODE_ENV: 'test', ...fastHashing, ...env },
      stdio: ['pipe', 'pipe', 'pipe']
    })
    child.stdin.end(stdin)
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => { stdout += d })
    child.stderr.on('data', (d) => { stderr += d })
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}

async function isSuperAdmin (target: { url?: string, dataDir: string }, email: string): Promise<boolean> {
  const handle = await openDatabase({ url: target.url, dataDir: target.dataDir, poolMax: 1 })
  try {
    const rows = await handle.db.select({ id: user.user_id }).from(user)
      .innerJoin(userGroup, eq(userGroup.user_id, user.user_id))
      .innerJoin(group, eq(group.group_id, userGroup.group_id))
      .where(and(eq(group.codename, 'super_admin'), eq(user.email, email)))
    return rows.length === 1
  } finally {
    await handle.close()
  }
}

async function login (baseUrl: string, email: string, password: string): Promise<number> {
  const res = await fetch(`${baseUrl}/api/v1/auth/login-with-password`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ identifier: email, password })
  })
  return res.status
}

t.test('the scripts beside a running server: migrate and seed exit 0, create-admin works or says the way', async (t) => {
  const dataDir = path.join(scratch, 'running')
  const database = testDatabaseMode === 'postgres' ? await createTestDatabase() : undefined
  if (database) t.teardown(() => database.drop())
  else await createEmbeddedDataDir(dataDir)
  const target: Record<string, string> = database?.url ? { DATABASE_URL: database.url, DATA_DIR: dataDir } : { DATA_DIR: dataDir }
  // No load shedding: on a loaded machine the event loop lags past the limit right after start.
  const server = await startServer(t, { label: 'scripts', env: { NODE_ENV: 'test', LOAD_SHED_EVENT_LOOP_DELAY_MS: '0', ...fastHashing, ...target } })
  const password = 'correct horse battery staple'

  const migrate = await script('migrate', target)
  t.equal(migrate.code, 0, migrate.stderr)
  const seed = await script('seed', target)
  t.equal(seed.code, 0, seed.stderr)
  const admin = await script('create-admin', target, ['--email', 'boss@example.com'], `${password}\n`)

  if (database) {
    t.match(migrate.stdout, /migrations applied \(postgres\)/)
    t.match(seed.stdout, /^seed: 0 permissions, 0 groups, 0 grants created \(postgres\)/m)
    t.equal(admin.code, 0, admin.stderr)
    t.match(admin.stdout, /^created super admin boss@example\.com/)
    t.equal(await login(server.url, 'boss@example.com', password), 200, 'the running server logs the new admin in')
    t.ok(await isSuperAdmin({ url: database.url, dataDir }, 'boss@example.com'))
    return
  }

  const lockFile = `${path.join(dataDir, 'pglite')}.lock`
  const lock = JSON.parse(readFileSync(lockFile, 'utf8')) as { pid: number, applied?: unknown }
  t.equal(lock.pid, server.pid, 'the server holds the folder')
  t.same(lock.applied, mine, 'and recorded what it applied at start')

  t.match(migrate.stdout, new RegExp(`^migrate: nothing to do: the server running on .* \\(process ${server.pid}\\) applied every migration \\(up to ${mine.migration}\\) at its start`, 'm'))
  t.match(seed.stdout, new RegExp(`^seed: nothing to do: the server running on .* \\(process ${server.pid}\\) applied the default permissions and groups`, 'm'))
  t.equal(admin.code, 1, 'create-admin cannot write beside the embedded server')
  t.match(admin.stderr, new RegExp(`in use by the running server \\(process ${server.pid}\\); PGlite serves one process at a time, so nothing was changed`))
  t.match(admin.stderr, /stop the server \(Ctrl-C\), run this command again/, 'and offers the ways')
  t.match(admin.stderr, /set BOOTSTRAP_ADMIN_EMAIL and BOOTSTRAP_ADMIN_PASSWORD in \.env and restart the server/)

  t.equal((await fetch(`${server.url}/health/ready`)).status, 200, 'the server still answers')
  t.equal(await login(server.url, 'boss@example.com', password), 401, 'no account was made')
  t.equal((JSON.parse(readFileSync(lockFile, 'utf8')) as { pid: number }).pid, server.pid, 'the lock is still the server\'s')

  t.match(await server.stop(), { code: 0 })
  const after = await script('create-admin', target, ['--email', 'boss@example.com'], `${password}\n`)
  t.equal(after.code, 0, after.stderr)
  t.match(after.stdout, /^created super admin boss@example\.com/, 'the first way: with the server stopped it works')
  t.ok(await isSuperAdmin({ dataDir }, 'boss@example.com'))
})

/** A process that stays alive while the test needs a live pid in a lock file. */
function liveProcess (t: { teardown: (fn: () => unknown) => void }): ChildProcess {
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' })
  t.teardown(() => { child.kill('SIGKILL') })
  return child
}

function bootId (): string | null {
  try { return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() } catch { return null }
}

t.test('a held embedded folder whose holder has not applied this checkout\'s state: exit 1 and say to restart', async (t) => {
  const dataDir = path.join(scratch, 'held')
  mkdirSync(path.join(dataDir, 'pglite'), { recursive: true })
  const holder = liveProcess(t)
  const writeLock = (applied?: unknown) => writeFileSync(`${path.join(dataDir, 'pglite')}.lock`,
    JSON.stringify({ pid: holder.pid, host: hostname(), boot: bootId(), at: new Date().toISOString(), applied }) + '\n')
  const env = { DATA_DIR: dataDir }

  writeLock()
  for (const name of ['migrate', 'seed'] as const) {
    const run = await script(name, env)
    t.equal(run.code, 1, `${name}: a holder that recorded nothing (another script, a server still starting)`)
    t.match(run.stderr, new RegExp(`in use by process ${holder.pid}.*applies migrations and default data itself once started`))
  }

  writeLock({ migration: '0000_older', defaults: mine.defaults })
  const older = await script('migrate', env)
  t.equal(older.code, 1, 'a server started on older migrations')
  t.match(older.stderr, new RegExp(`applied migrations up to 0000_older at its start; this checkout has up to ${mine.migration}\\. Restart the server`))

  writeLock({ migration: mine.migration, defaults: 'other' })
  const migrated = await script('migrate', env)
  t.equal(migrated.code, 0, 'migrations match: nothing to do')
  const seed = await script('seed', env)
  t.equal(seed.code, 1, 'other default data: seed says to restart')
  t.match(seed.stderr, /other default permissions and groups than this checkout's\. Restart the server/)
})
