import { sql } from 'drizzle-orm'
import t from 'tap'
import { dedicatedConnection, executeRows, openDatabase, statementCache } from '../../db/client.ts'
import { createTestDatabase, testDatabaseMode } from '../helpers/database.ts'
import { TcpProxy } from '../helpers/tcp-proxy.ts'

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

t.test('SR-40: the server going away right after a connection starts up fails the query, never the process', { skip: testDatabaseMode !== 'postgres' && 'postgres mode only' }, async (t) => {
  const database = await createTestDatabase()
  t.teardown(() => database.drop())
  const direct = new URL(database.url!)
  const proxy = new TcpProxy(Number(direct.port || 5432))
  t.teardown(() => proxy.stop())
  const proxied = new URL(direct)
  proxied.hostname = '127.0.0.1'
  proxied.port = String(await proxy.start())
  const unhandled: unknown[] = []
  const record = (reason: unknown) => { unhandled.push(reason) }
  process.on('unhandledRejection', record)
  t.teardown(() => { process.off('unhandledRejection', record) })

  // The first message after the startup exchange (a Parse or a simple Query) is where
  // postgres.js used to send its array-type lookup; the server vanishes right there.
  proxy.cutAt((chunk) => chunk[0] === 0x50 || chunk[0] === 0x51)
  const handle = await openDatabase({ url: proxied.toString(), dataDir: '', poolMax: 1, connectTimeoutSeconds: 2 })
  t.teardown(() => handle.close())
  await t.rejects(handle.ping(), 'the query fails')
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.same(unhandled.map(String), [], 'no promise rejected unhandled (which would end the process)')

  await proxy.start()
  await handle.ping()
  t.pass('the same handle works once the server is back')
})

t.test('statementCache: one statement per shape, built on first use; past its size, built per call', async (t) => {
  const built: string[] = []
  const statement = statementCache<string>(2)
  const build = (key: string) => (n: number) => { built.push(key); return `${key}#${n}` }
  t.equal(statement('a', build('a')), 'a#0')
  t.equal(statement('a', build('a')), 'a#0', 'the same shape gets the statement built for it')
  t.equal(statement('b', build('b')), 'b#1')
  t.same(built, ['a', 'b'], 'each shape built once')
  t.equal(statement('c', build('c')), 'c#2')
  t.equal(statement('c', build('c')), 'c#2')
  t.same(built, ['a', 'b', 'c', 'c'], 'a shape past the limit is built per call, not kept')
  t.equal(statement('a', build('a')), 'a#0', 'the kept ones stay')
})
