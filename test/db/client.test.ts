import { sql } from 'drizzle-orm'
import t from 'tap'
import { dedicatedConnection, executeRows, openDatabase } from '../../db/client.ts'
import { createTestDatabase, testDatabaseMode } from '../helpers/database.ts'

t.test('postgres.js handle: ping, stats, a dedicated connection, idempotent close', { skip: testDatabaseMode !== 'postgres' && 'postgres mode only' }, async (t) => {
  const database = await createTestDatabase()
  t.teardown(() => database.drop())
  const handle = await openDatabase({ url: database.url, dataDir: '/nonexistent', poolMax: 3 })
  t.equal(handle.driver, 'postgres')
  t.same(handle.stats(), { driver: 'postgres', poolMax: 3 })
  await handle.ping()
  t.same(await executeRows(handle.db, sql`select current_database() as name`), [{ name: new URL(database.url!).pathname.slice(1) }])
  t.notOk(JSON.stringify(Object.keys(handle)).includes('url'), 'the URL (with its password) is not on the handle')

  const single = dedicatedConnection(handle)!
  const [backend] = await single`select pg_backend_pid() as pid`
  const [again] = await single`select pg_backend_pid() as pid`
  t.equal(backend.pid, again.pid, 'one session')
  await single.end()

  await handle.close()
  await handle.close()
  await t.rejects(handle.ping(), 'closed handles fail')
})

t.test('an unreachable server: opening succeeds (the app can start and recover), ping fails fast', async (t) => {
  const handle = await openDatabase({ url: 'postgres://postgres@127.0.0.1:1/nothing', dataDir: '', poolMax: 1 })
  const started = Date.now()
  await t.rejects(handle.ping())
  t.ok(Date.now() - started < 6000, 'within the connect timeout')
  await handle.close()
})
