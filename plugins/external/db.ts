import path from 'node:path'
import fp from 'fastify-plugin'
import { openDatabase, type Database, type DatabaseHandle } from '../../db/client.ts'
import { appliedState, migrateDatabase } from '../../db/migrate.ts'
import { recordAppliedState } from '../../db/pglite-lock.ts'
import { seedDatabase } from '../../db/seed.ts'
import { ensureBootstrapAdmin } from '../../db/admin.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** Drizzle, on postgres.js (DATABASE_URL) or on embedded PGlite. */
    db: Database
    database: DatabaseHandle
  }
}

/** Opens the database, applies migrations and default data, bootstraps the first admin, closes on shutdown. */
export default fp(async (fastify) => {
  const { DATABASE_URL, DATA_DIR, DB_POOL_MAX, DB_CONNECT_TIMEOUT_SECONDS, DB_MIGRATE_ON_START, BOOTSTRAP_ADMIN_EMAIL, BOOTSTRAP_ADMIN_PASSWORD } = fastify.config
  const handle = await openDatabase({ url: DATABASE_URL, dataDir: DATA_DIR, poolMax: DB_POOL_MAX, pglite: fastify.deps.pglite, connectTimeoutSeconds: DB_CONNECT_TIMEOUT_SECONDS })
  fastify.addHook('onClose', async () => { await handle.close() })
  const start = handle.embeddedStart
  if (start?.from === 'template') fastify.log.info('embedded database created from the local template (db/template.ts)')
  else if (start?.from === 'initdb') fastify.log.info({ reason: start.reason }, 'embedded database created by initdb, not from the local template')
  if (handle.driver === 'pglite' || DB_MIGRATE_ON_START) {
    await migrateDatabase(handle)
    await seedDatabase(handle.db)
    // `db:migrate` / `db:seed` run beside this server read it from the folder's
    // lock and answer that their work is done (db/cli.ts). Same folder as
    // openDatabase()'s; a no-op for an injected PGlite, which holds no lock.
    if (handle.driver === 'pglite') recordAppliedState(path.join(DATA_DIR, 'pglite'), appliedState())
  }
  if (BOOTSTRAP_ADMIN_EMAIL && BOOTSTRAP_ADMIN_PASSWORD) {
    const outcome = await ensureBootstrapAdmin(handle.db, { email: BOOTSTRAP_ADMIN_EMAIL, password: BOOTSTRAP_ADMIN_PASSWORD })
    if (outcome !== 'exists') fastify.log.info({ email: BOOTSTRAP_ADMIN_EMAIL, outcome }, 'bootstrap super admin')
  }
  fastify.decorate('db', handle.db)
  fastify.decorate('database', handle)
}, { name: 'db' })
