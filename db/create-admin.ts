import { parseArgs } from 'node:util'
import type { AppConfig } from '../config.ts'
import { errorMessage, isMainModule, loadDotenv } from './cli.ts'
import { DataDirLockedError } from './pglite-lock.ts'

/**
 * `tsx db/create-admin.ts --email a@b.c`
 *
 * Creates a super admin, or makes the existing account with that email one.
 * The password (only needed to create) comes from CREATE_ADMIN_PASSWORD, else
 * from stdin when it is not a terminal (`echo '...' | npm run create-admin --
 * --email a@b.c`, read to its end, one final newline dropped), else from a
 * hidden prompt on the terminal. Never from an argument: npm echoes the
 * command line and `ps` shows it to every user of the host. It must pass the
 * API's password policy (plugins/app/auth/password-policy.ts). There is
 * deliberately no master OTP or default password: this is the way in.
 *
 * Beside a running embedded server (which holds the PGlite folder) it changes
 * nothing and says the two ways that work: stop the server and run it again,
 * or BOOTSTRAP_ADMIN_EMAIL/BOOTSTRAP_ADMIN_PASSWORD and a restart (exit 1).
 *
 * Exit codes: 0 done, 1 failure (database, database held by a server, refused
 * account), 2 bad usage.
 */

const USAGE = 'usage: create-admin --email <address>  (password from stdin, CREATE_ADMIN_PASSWORD, or a prompt)\n' +
  "  e.g. printf '%s\\n' 'a long passphrase' | npm run create-admin -- --email you@example.com"
const NO_PASSWORD_ARGUMENT = '--password is not accepted: npm echoes the command line and ps shows it to every user of the host. ' +
  'Pipe the password on stdin instead, or run the command on a terminal to be asked for it.'
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/

class UsageError extends Error {}

async function main (argv: string[]): Promise<number> {
  let values: { email?: string, password?: string, help?: boolean }
  try {
    values = parseArgs({
      args: argv,
      options: { email: { type: 'string' }, password: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      strict: true
    }).values
  } catch (error) {
    console.error(`create-admin: ${errorMessage(error)}\n${USAGE}`)
    return 2
  }
  if (values.help) {
    console.log(USAGE)
    return 0
  }
  if (values.password !== undefined) {
    console.error(`create-admin: ${NO_PASSWORD_ARGUMENT}\n${USAGE}`)
    return 2
  }
  if (!values.email || !EMAIL.test(values.email.trim())) {
    console.error(`create-admin: a valid --email is required\n${USAGE}`)
    return 2
  }
  // Loaded only now, so a usage error answers at once instead of after the
  // database drivers and the hashing library are loaded.
  const [{ ConfigError, loadConfig }, { createOrPromoteSuperAdmin, findUserByEmail, normalizeEmail, SuperAdminError }, { openDatabase }, { migrateDatabase }, { seedDatabase }, { describePasswordProblem, passwordProblem }] =
    await Promise.all([import('../config.ts'), import('./admin.ts'), import('./client.ts'), import('./migrate.ts'), import('./seed.ts'), import('../plugins/app/auth/password-policy.ts')])
  const email = normalizeEmail(values.email)

  await loadDotenv()
  let config: AppConfig
  try {
    config = loadConfig()
  } catch (error) {
    if (error instanceof ConfigError) {
      for (const problem of error.problems) console.error(`config: ${problem}`)
      return 2
    }
    throw error
  }
  const limits = { min: config.PASSWORD_MIN_LENGTH, max: config.PASSWORD_MAX_LENGTH }
  const checkPassword = (password: string) => {
    const problem = passwordProblem(password, limits)
    if (problem) throw new UsageError(describePasswordProblem(problem, limits))
    return password
  }
  // A password that was given is checked before the database is opened, even
  // if the account turns out to exist (and the password is then not used).
  let given: string | undefined
  try {
    given = process.env.CREATE_ADMIN_PASSWORD ?? (process.stdin.isTTY ? undefined : await readPiped())
    if (given !== undefined) checkPassword(given)
  } catch (error) {
    console.error(`create-admin: ${errorMessage(error)}`)
    return 2
  }

  let handle: Awaited<ReturnType<typeof openDatabase>>
  try {
    handle = await openDatabase({ url: config.DATABASE_URL, dataDir: config.DATA_DIR, poolMax: 2 })
  } catch (error) {
    if (!(error instanceof DataDirLockedError)) throw error
    console.error(heldFolderAdvice(error))
    return 1
  }
  try {
    // The same rule as the server's start: the embedded database is always
    // brought up to date; PostgreSQL unless a separate migrate job owns that.
    if (handle.driver === 'pglite' || config.DB_MIGRATE_ON_START) {
      await migrateDatabase(handle)
      await seedDatabase(handle.db)
    }
    const existing = await findUserByEmail(handle.db, email)
    let password: string | undefined
    if (!existing) {
      password = given ?? (process.stdin.isTTY ? checkPassword(await promptNewPassword()) : undefined)
      if (password === undefined) throw new UsageError('no account has this email yet; a password is needed: pipe it on stdin, set CREATE_ADMIN_PASSWORD or run on a terminal')
    }
    const result = await createOrPromoteSuperAdmin(handle.db, {
      email,
      password,
      hashParams: { memoryCost: config.ARGON2_MEMORY_KIB, timeCost: config.ARGON2_TIME_COST, parallelism: config.ARGON2_PARALLELISM }
    })
    const ignored = existing && given !== undefined ? '; its password was not changed' : ''
    const lines: Record<typeof result.outcome, string> = {
      created: `created super admin ${email} (${result.userId})`,
      promoted: `promoted ${email} (${result.userId}) to super admin${result.reactivated ? ' and reactivated the account' : ''}${ignored}`,
      already: `${email} (${result.userId}) is already an active super admin${ignored}`
    }
    console.log(lines[result.outcome])
    return 0
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`create-admin: ${error.message}`)
      return 2
    }
    if (error instanceof SuperAdminError) {
      console.error(`create-admin: ${error.message}`)
      return 1
    }
    throw error
  } finally {
    await handle.close()
  }
}

/**
 * The embedded folder is held, in practice by `npm start`: PGlite serves one
 * process at a time, so the account cannot be written from here. The two ways
 * that work, both ending in a (re)started server.
 */
function heldFolderAdvice (error: DataDirLockedError): string {
  const holder = error.holder?.applied ? `the running server (process ${error.pid})` : `process ${error.pid}`
  return [
    `create-admin: the embedded database ${error.folder} is in use by ${holder}; PGlite serves one process at a time, so nothing was changed. Either:`,
    '  - stop the server (Ctrl-C), run this command again, then start the server; or',
    '  - set BOOTSTRAP_ADMIN_EMAIL and BOOTSTRAP_ADMIN_PASSWORD in .env and restart the server: at start it creates that super admin, or promotes the existing account.',
    'With DATABASE_URL (PostgreSQL) this command runs beside the server.'
  ].join('\n')
}

/** All of a piped stdin, less one final newline (what `echo` adds); undefined when nothing came. */
async function readPiped (): Promise<string | undefined> {
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  const text = Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '')
  return text === '' ? undefined : text
}

async function promptNewPassword (): Promise<string> {
  const first = await promptHidden('Password for the new super admin: ')
  const second = await promptHidden('Repeat the password: ')
  if (first !== second) throw new UsageError('the passwords do not match')
  return first
}

/** Reads one line from the terminal without echoing it. */
function promptHidden (question: string): Promise<string> {
  const { stdin, stderr } = process
  return new Promise((resolve, reject) => {
    let typed = ''
    stderr.write(question)
    stdin.setRawMode(true)
    stdin.resume()
    stdin.setEncoding('utf8')
    const finish = (error?: Error) => {
      stdin.setRawMode(false)
      stdin.pause()
      stdin.off('data', onData)
      stderr.write('\n')
      if (error) reject(error)
      else resolve(typed)
    }
    const onData = (chunk: string) => {
      for (const char of chunk) {
        if (char === '\r' || char === '\n') return finish()
        if (char === '\u0003' || char === '\u0004') return finish(new UsageError('cancelled'))
        if (char === '\u007f' || char === '\b') typed = typed.slice(0, -1)
        else typed += char
      }
    }
    stdin.on('data', onData)
  })
}

if (isMainModule(import.meta.url)) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code
  }, (error: unknown) => {
    console.error(`create-admin failed: ${errorMessage(error)}`)
    process.exitCode = 1
  })
}
