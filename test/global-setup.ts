import { dropStaleTestDatabases, prepareTemplate, testDatabaseMode } from './helpers/database.ts'

// tap's `before` script: builds the migrated + seeded template once for the
// whole run (a no-op when this schema's template already exists), so the test
// files, running in parallel, only clone it.
const started = Date.now()
const template = await prepareTemplate(testDatabaseMode)
const dropped = testDatabaseMode === 'postgres' ? await dropStaleTestDatabases() : 0
console.log(`# test database template (${testDatabaseMode}): ${template} ready in ${Date.now() - started} ms` +
  (dropped > 0 ? `; dropped ${dropped} stale test databases` : ''))
