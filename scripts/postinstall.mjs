// npm's postinstall, after patch-package: builds the embedded database's local
// template (db/template.ts, `npm run db:template`) so that the first `npm start`
// loads it instead of running initdb, the migrations and the seed. It never fails
// the install: on any error there is simply no template, and the first start runs
// initdb as before. Skipped with NODE_ENV=production (the image's runtime stage,
// which runs on PostgreSQL) and with SKIP_DB_TEMPLATE=1.
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const skip = process.env.NODE_ENV === 'production' || process.env.SKIP_DB_TEMPLATE === '1' ||
  !existsSync(path.join(root, 'db', 'build-template.ts'))
if (!skip) {
  try {
    const run = spawnSync(process.execPath, ['--import', 'tsx', path.join('db', 'build-template.ts')], { cwd: root, stdio: 'inherit', timeout: 300_000 })
    if (run.status !== 0) console.warn('embedded database template not built; the first embedded start will run initdb instead (`npm run db:template` retries)')
  } catch (error) {
    console.warn(`embedded database template not built (${error instanceof Error ? error.message : String(error)})`)
  }
}
