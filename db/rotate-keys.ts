import { parseArgs } from 'node:util'
import type { AppConfig } from '../config.ts'
import { errorMessage, isMainModule, loadDotenv } from './cli.ts'
import { DataDirLockedError } from './pglite-lock.ts'

/**
 * `npm run rotate-keys` (`tsx db/rotate-keys.ts [--if-due]`)
 *
 * Replaces the current token signing key with a new one of JWT_ALGORITHM (with
 * HS256: retires it). The old key stays published until the last token it signed
 * has expired (plugins/app/auth/signing-keys.ts). `--if-due`: only when the key is
 * JWT_KEY_ROTATION_DAYS old (what the servers check hourly; for a cron job).
 *
 * Runs beside running servers on PostgreSQL: it takes the same advisory lock they
 * do, and each server picks the new key up within a minute (at once for a token
 * that names it). The embedded database serves one process at a time: stop the
 * server first.
 *
 * Exit codes: 0 done, 1 failure, 2 bad usage.
 */
const USAGE = 'usage: rotate-keys [--if-due]'

async function main (argv: string[]): Promise<number> {
  let values: { 'if-due'?: boolean, help?: boolean }
  try {
    values = parseArgs({ args: argv, options: { 'if-due': { type: 'boolean' }, help: { type: 'boolean', short: 'h' } }, strict: true }).values
  } catch (error) {
    console.error(`rotate-keys: ${errorMessage(error)}\n${USAGE}`)
    return 2
  }
  if (values.help) {
    console.log(USAGE)
    return 0
  }
  const [{ ConfigError, loadConfig, withGeneratedSecret }, { openDatabase }, { migrateDatabase }, { keyPolicy, publishedKeys, reconcileKeys }] =
    await Promise.all([import('../config.ts'), import('./client.ts'), import('./migrate.ts'), import('../plugins/app/auth/signing-keys.ts')])
  await loadDotenv()
  let config: AppConfig
  try {
    config = withGeneratedSecret(loadConfig())
  } catch (error) {
    if (error instanceof ConfigError) {
      for (const problem of error.problems) console.error(`config: ${problem}`)
      return 2
    }
    throw error
  }
  let handle: Awaited<ReturnType<typeof openDatabase>>
  try {
    handle = await openDatabase({ url: config.DATABASE_URL, dataDir: config.DATA_DIR, poolMax: 2 })
  } catch (error) {
    if (!(error instanceof DataDirLockedError)) throw error
    console.error(`rotate-keys: the embedded database ${error.folder} is in use by process ${error.pid}; PGlite serves one process at a time, so nothing was changed. ` +
      'Stop the server, run this again, then start it. With DATABASE_URL (PostgreSQL) this command runs beside the servers.')
    return 1
  }
  try {
    if (handle.driver === 'pglite' || config.DB_MIGRATE_ON_START) await migrateDatabase(handle)
    const now = new Date()
    const change = await reconcileKeys(handle.db, keyPolicy(config), now, !values['if-due'])
    const current = (await publishedKeys(handle.db, now)).find((key) => key.retired_at === null)
    const lines = {
      created: `created signing key ${current?.kid} (${current?.alg})`,
      rotated: `rotated: signing with ${current?.kid} (${current?.alg}); the previous key stays published until its tokens have expired`,
      retired: 'JWT_ALGORITHM is HS256: the signing key was retired (still published until its tokens have expired)',
      unchanged: current ? `not due: ${current.kid} (${current.alg}) is younger than JWT_KEY_ROTATION_DAYS` : 'nothing to do (HS256, no key pair in use)'
    }
    console.log(lines[change])
    return 0
  } finally {
    await handle.close()
  }
}

if (isMainModule(import.meta.url)) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code
  }, (error: unknown) => {
    console.error(`rotate-keys failed: ${errorMessage(error)}`)
    process.exitCode = 1
  })
}
