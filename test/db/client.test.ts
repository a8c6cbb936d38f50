import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
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

// patches/postgres+3.4.9.patch, applied by npm's postinstall (patch-package). Unpatched,
// the pool's queue of busy connections grew by a slot per query while it never drained
// and every query scanned it whole (docs/performance.md): speed, so not timed here, but
// the patch must be in place and the queue must still be a queue.
const require = createRequire(import.meta.url)
// (require resolves to cjs/src/index.js; the package exports no package.json)
const postgresDir = path.resolve(path.dirname(require.resolve('postgres')), '..', '..')
const queueFiles = ['src/queue.js', 'cjs/src/queue.js', 'cf/src/queue.js']

t.test('postgres.js queue: the patch is applied to every build of the package', async (t) => {
  for (const file of queueFiles) {
    const source = readFileSync(path.join(postgresDir, file), 'utf8')
    t.match(source, 'xs.indexOf(x, index)', `${file}: remove searches from the head`)
    t.match(source, 'xs = xs.slice(index)', `${file}: shift drops the emptied slots`)
  }
})

t.test('postgres.js queue (patched): first in, first out, remove, length, across compactions', async (t) => {
  type Queue<T> = { length: number, push: (x: T) => T, shift: () => T | undefined, remove: (x: T) => T | null }
  const builds: Array<[string, () => Queue<{ n: number }>]> = [
    ['esm', (await import(pathToFileURL(path.join(postgresDir, 'src/queue.js')).href)).default],
    ['cjs', require(path.join(postgresDir, 'cjs/src/queue.js'))]
  ]
  for (const [name, Queue] of builds) {
    const queue = Queue()
    const expected: Array<{ n: number }> = []
    let taken = 0
    const problems: string[] = []
    // Never drained: a few items always left, as the busy queue under steady load.
    for (let n = 0; n < 5000; n++) {
      const item = { n }
      expected.push(queue.push(item))
      if (n % 7 === 3) {
        if (queue.remove(item) !== item) problems.push(`remove(${n}) at the tail missed`)
        expected.pop()
      }
      while (queue.length > 3) {
        const out = queue.shift()
        if (out !== expected[taken]) problems.push(`shift gave ${out?.n}, expected ${expected[taken]?.n}`)
        if (queue.remove(out!) !== null) problems.push(`a shifted item (${out?.n}) was still there`)
        taken++
      }
    }
    t.same(problems.slice(0, 5), [], `${name}: order kept, removals exact`)
    t.equal(queue.length, expected.length - taken, `${name}: length counts what is left`)
    const rest: Array<{ n: number } | undefined> = []
    while (queue.length) rest.push(queue.shift())
    t.same(rest, expected.slice(taken), `${name}: the rest comes out in order`)
  }
})

t.test('a pool of two connections serves 3,000 queries from 50 callers, each its own answer', { skip: testDatabaseMode !== 'postgres' && 'postgres mode only' }, async (t) => {
  const database = await createTestDatabase()
  t.teardown(() => database.drop())
  const handle = await openDatabase({ url: database.url, dataDir: '/nonexistent', poolMax: 2 })
  t.teardown(() => handle.close())
  let next = 0
  const wrong: number[] = []
  await Promise.all(Array.from({ length: 50 }, async () => {
    while (next < 3000) {
      const n = next++
      const [row] = await executeRows<{ n: number }>(handle.db, sql`select ${n}::int as n`)
      if (row.n !== n) wrong.push(n)
    }
  }))
  t.same(wrong, [], 'no answer reached the wrong caller')
})
