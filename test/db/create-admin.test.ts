import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { and, eq } from 'drizzle-orm'
import t from 'tap'
import { openDatabase, type Database } from '../../db/client.ts'
import { group, user, userGroup } from '../../db/schema/index.ts'
import { verifyPassword } from '../../workers/password.ts'
import { createEmbeddedDataDir, createTestDatabase, testDatabaseMode } from '../helpers/database.ts'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
const tsx = import.meta.resolve('tsx')
// The CLI runs in a scratch directory, so a developer's .env cannot leak into it.
const cwd = mkdtempSync(path.join(tmpdir(), 'create-admin-'))
t.teardown(() => rmSync(cwd, { recursive: true, force: true }))

// postgres: a test database by URL. embedded: the CLI opens a PGlite folder
// (DATA_DIR) itself, prepared from the template to skip a slow initdb.
const database = testDatabaseMode === 'postgres' ? await createTestDatabase() : undefined
if (database) t.teardown(() => database.drop())
else await createEmbeddedDataDir(path.join(cwd, 'data'))
const target: Record<string, string> = database?.url
  ? { DATABASE_URL: database.url }
  : { DATA_DIR: path.join(cwd, 'data') }

/** Runs the CLI with `stdin` piped in (nothing: an empty pipe, as from /dev/null). */
function createAdmin (args: string[], env: Record<string, string> = {}, stdin = '') {
  return runTsx(path.join(root, 'db', 'create-admin.ts'), args, { NODE_ENV: 'test', ARGON2_MEMORY_KIB: '1024', ARGON2_TIME_COST: '1', ...target, ...env }, stdin)
}

function runTsx (file: string, args: string[], env: Record<string, string>, stdin = '') {
  return new Promise<{ code: number | null, stdout: string, stderr: string }>((resolve) => {
    const child = spawn(process.execPath, ['--import', tsx, file, ...args], {
      cwd,
      env: { PATH: process.env.PATH ?? '', ...env },
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

/** Opens the database the CLI uses, between CLI runs (the embedded folder allows one process at a time). */
async function withDatabase<T> (fn: (db: Database) => Promise<T>): Promise<T> {
  const handle = await openDatabase({ url: database?.url, dataDir: target.DATA_DIR ?? '', poolMax: 1 })
  try {
    return await fn(handle.db)
  } finally {
    await handle.close()
  }
}

async function isSuperAdmin (db: Database, email: string): Promise<boolean> {
  const rows = await db.select({ id: user.user_id }).from(user)
    .innerJoin(userGroup, eq(userGroup.user_id, user.user_id))
    .innerJoin(group, eq(group.group_id, userGroup.group_id))
    .where(and(eq(group.codename, 'super_admin'), eq(user.email, email)))
  return rows.length === 1
}

t.test('creates a super admin, promotes an existing user, then says it is already one', async (t) => {
  await withDatabase((db) => db.insert(user).values({ email: 'member@example.com', password: 'their-hash' }))

  // As `echo 'correct horse battery staple' | npm run create-admin -- --email ...` sends it.
  const created = await createAdmin(['--email', 'Admin@Example.com'], {}, 'correct horse battery staple\n')
  t.equal(created.code, 0, created.stderr)
  t.match(created.stdout.trim(), /^created super admin admin@example\.com \([0-9a-f-]{36}\)$/)

  const promoted = await createAdmin(['--email', 'MEMBER@example.com'], {}, 'ignored password here')
  t.equal(promoted.code, 0, promoted.stderr)
  t.match(promoted.stdout, /^promoted member@example\.com .* to super admin; its password was not changed$/m)

  // Every CLI start on the embedded folder costs a PGlite boot; one run of this is enough.
  if (testDatabaseMode === 'postgres') {
    const again = await createAdmin(['--email', 'member@example.com'])
    t.equal(again.code, 0, again.stderr)
    t.match(again.stdout, /is already an active super admin/)
  }

  await withDatabase(async (db) => {
    const [admin] = await db.select().from(user).where(eq(user.email, 'admin@example.com'))
    t.ok(await verifyPassword(admin.password!, 'correct horse battery staple'), 'the new admin\'s password verifies, without echo\'s newline')
    t.ok(await isSuperAdmin(db, 'admin@example.com'))
    const [member] = await db.select().from(user).where(eq(user.email, 'member@example.com'))
    t.equal(member.password, 'their-hash', 'the promoted account keeps its password')
    t.ok(await isSuperAdmin(db, 'member@example.com'))
  })
})

// Argument handling does not depend on the driver; the embedded run, where
// every CLI start opens a PGlite folder, only checks creating and promoting.
const postgresOnly = { skip: testDatabaseMode !== 'postgres' && 'driver-independent; checked in the postgres run' }

t.test('takes the password from CREATE_ADMIN_PASSWORD', postgresOnly, async (t) => {
  const result = await createAdmin(['--email', 'env@example.com'], { CREATE_ADMIN_PASSWORD: 'from the environment' })
  t.equal(result.code, 0, result.stderr)
  t.match(result.stdout, /^created super admin env@example\.com/)
})

t.test('usage errors exit 2 with one clear line', postgresOnly, async (t) => {
  const noEmail = await createAdmin([])
  t.equal(noEmail.code, 2)
  t.match(noEmail.stderr, /a valid --email is required/)
  const unknownFlag = await createAdmin(['--email', 'x@example.com', '--master-otp', '123456'])
  t.equal(unknownFlag.code, 2)
  t.match(unknownFlag.stderr, /Unknown option '--master-otp'/)
  const noPassword = await createAdmin(['--email', 'new@example.com'])
  t.equal(noPassword.code, 2, 'no password and no terminal to ask on')
  t.match(noPassword.stderr, /a password is needed|give a password/)
  const short = await createAdmin(['--email', 'new@example.com'], {}, 'short\n')
  t.equal(short.code, 2)
  t.match(short.stderr, /the password must have 8 to 128 characters/)
})

t.test('SR-1, SR-4: the API\'s password policy applies; a password is never taken from the command line', postgresOnly, async (t) => {
  const argument = await createAdmin(['--email', 'arg@example.com', '--password', 'correct horse battery staple'])
  t.equal(argument.code, 2, '--password is refused')
  t.match(argument.stderr, /--password is not accepted/)
  t.match(argument.stderr, /Pipe the password on stdin/, 'and the way to do it is explained')
  t.notMatch(argument.stdout, /created/)

  for (const weak of ['password', 'Password1', 'qwertyuiop']) {
    const refused = await createAdmin(['--email', 'weak@example.com'], {}, `${weak}\n`)
    t.equal(refused.code, 2, `${weak}: refused like the API refuses it (WEAK_PASSWORD)`)
    t.match(refused.stderr, /on the list of common passwords/)
  }
  const fromEnv = await createAdmin(['--email', 'weak@example.com'], { CREATE_ADMIN_PASSWORD: 'password' })
  t.equal(fromEnv.code, 2, 'CREATE_ADMIN_PASSWORD too')
  const tooLong = await createAdmin(['--email', 'weak@example.com'], { PASSWORD_MAX_LENGTH: '20' }, 'a'.repeat(21))
  t.equal(tooLong.code, 2)
  t.match(tooLong.stderr, /8 to 20 characters/, 'PASSWORD_MAX_LENGTH applies')
  const emoji = await createAdmin(['--email', 'emoji@example.com'], {}, '🔑🔑🔑🔑🔑🔑🔑🔑')
  t.equal(emoji.code, 0, 'eight emoji are eight characters (SR-3)')
  await withDatabase(async (db) => {
    t.same((await db.select().from(user).where(eq(user.email, 'weak@example.com'))), [], 'no account was made with a refused password')
    t.equal((await db.select().from(user).where(eq(user.email, 'arg@example.com'))).length, 0)
  })
})

t.test('BOOTSTRAP_ADMIN_PASSWORD: a password the policy refuses stops the start with one clear line', postgresOnly, async (t) => {
  const started = await runTsx(path.join(root, 'server.ts'), [], {
    NODE_ENV: 'test', PORT: '0', ...target, BOOTSTRAP_ADMIN_EMAIL: 'boot@example.com', BOOTSTRAP_ADMIN_PASSWORD: 'password123'
  })
  t.equal(started.code, 1)
  t.match(started.stderr, /^config: BOOTSTRAP_ADMIN_PASSWORD: the password is on the list of common passwords; choose another$/m)
  await withDatabase(async (db) => {
    t.same(await db.select().from(user).where(eq(user.email, 'boot@example.com')), [], 'nothing was created')
  })
})
