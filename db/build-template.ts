import { gzipSync } from 'node:zlib'
import { errorMessage, isMainModule } from './cli.ts'
import { openDatabase } from './client.ts'
import { migrateDatabase } from './migrate.ts'
import { seedDatabase } from './seed.ts'
import { defaultTemplateDir, readTemplate, templateKey, writeTemplate } from './template.ts'

/**
 * Builds the local template of the embedded database (db/template.ts): initdb,
 * every migration and the default data, in an in-memory PGlite that reads no
 * configuration, dumped into `dir`. Returns the template's path.
 */
export async function buildTemplate (dir = defaultTemplateDir(), key = templateKey()): Promise<string> {
  const { PGlite } = await import('@electric-sql/pglite')
  const pglite = new PGlite()
  try {
    const handle = await openDatabase({ dataDir: '', poolMax: 1, pglite })
    await migrateDatabase(handle)
    await seedDatabase(handle.db)
    await pglite.query('checkpoint')
    const tar = await pglite.dumpDataDir('none')
    return writeTemplate(gzipSync(new Uint8Array(await tar.arrayBuffer()), { level: 6 }), dir, key)
  } finally {
    await pglite.close()
  }
}

/**
 * `npm run db:template` (also run by npm's postinstall, scripts/postinstall.mjs):
 * builds the template unless a valid one for this checkout exists (--force: always).
 */
async function main (): Promise<void> {
  const force = process.argv.includes('--force')
  const current = readTemplate()
  if (current.ok && !force) {
    console.log(`embedded database template: up to date (${current.file})`)
    return
  }
  const started = Date.now()
  const file = await buildTemplate()
  console.log(`embedded database template: built ${file} in ${((Date.now() - started) / 1000).toFixed(1)} s`)
}

if (isMainModule(import.meta.url)) {
  main().catch((error: unknown) => {
    console.error(`db:template failed: ${errorMessage(error)}`)
    process.exitCode = 1
  })
}
