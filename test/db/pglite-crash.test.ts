import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { hostname, tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { count, sql } from 'drizzle-orm'
import t from 'tap'
import { openDatabase } from '../../db/client.ts'
import { migrateDatabase } from '../../db/migrate.ts'
import { acquireDataDirLock, DataDirLockedError } from '../../db/pglite-lock.ts'
import { activityLog } from '../../db/schema/index.ts'
import { createEmbeddedDataDir, createTestDatabase, testDatabaseMode } from '../helpers/database.ts'

/**
 * SR-43 for the embedded database: a process killed with SIGKILL in the middle
 * of writing leaves a folder that opens again, with every row it had reported
 * as committed. This file is also the child process: started with
 * CRASH_CHILD_DATA_DIR it opens that folder and inserts until it is killed.
 */

const childDataDir = process.env.CRASH_CHILD_DATA_DIR
if (childDataDir) {
  await runChild(childDataDir)
} else {
  registerTests()
}

async function runChild (dataDir: string): Promise<never> {
  const handle = await openDatabase({ dataDir, poolMax: 1 })
  await migrateDatabase(handle)
  process.stdout.write('open\n')
  for (let i = 1; ; i++) {
    await handle.db.insert(activityLog).values({ level: 'info', action: 'crash_test', module: 'test', message: String(i) })
    // Written only after the insert returned: the parent counts these as committed.
    // Pipe writes are synchronous on Linux, so the line is out before the next step.
    process.stdout.write(`committed ${i}\n`)
  }
}

function registerTests (): void {
  const tsx = import.meta.resolve('tsx')
  const self = fileURLToPath(import.meta.url)

  const scratch = () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'pglite-crash-'))
    t.teardown(() => rmSync(dir, { recursive: true, force: true }))
    return dir
  }

  const embeddedOnly = { skip: testDatabaseMode !== 'embedded' && 'embedded mode only' }

  t.test('a SIGKILLed writer leaves a folder that reopens with every committed row', embeddedOnly, async (t) => {
    const dataDir = scratch()
    await createEmbeddedDataDir(dataDir)
    const child = spawn(process.execPath, ['--import', tsx, self], {
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', CRASH_CHILD_DATA_DIR: dataDir },
      stdio: ['ignore', 'pipe', 'inherit']
    })
    t.teardown(() => { child.kill('SIGKILL') })
    let committed = 0
    let output = ''
    const opened = new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (chunk: Buffer) => {
        output += chunk.toString()
        if (output.includes('open\n')) resolve()
        const last = [...output.matchAll(/committed (\d+)\n/g)].pop()
        if (last) committed = Number(last[1])
      })
      child.once('exit', (code) => reject(new Error(`the child exited early (${code}): ${output}`)))
    })
    await opened

    // While the writer lives, a second opener is refused instead of corrupting the folder.
    await t.rejects(openDatabase({ dataDir, poolMax: 1 }), DataDirLockedError)

    await waitFor(() => committed >= 25, 20_000)
    await kill(child)
    t.ok(committed >= 25, `the child had committed ${committed} rows when killed`)
    t.ok(existsSync(path.join(dataDir, 'pglite.lock')), 'the dead process left its lock file')

    const handle = await openDatabase({ dataDir, poolMax: 1 })
    try {
      const [rows] = await handle.db.select({ n: count() }).from(activityLog)
      t.ok(rows.n >= committed, `${rows.n} rows survived, at least the ${committed} reported committed`)
      await handle.db.insert(activityLog).values({ level: 'info', action: 'after_crash', module: 'test' })
      await handle.ping()
    } finally {
      await handle.close()
    }
    t.notOk(existsSync(path.join(dataDir, 'pglite.lock')), 'close() releases the lock')
  })

  t.test('stale locks are taken over; a live one is respected', async (t) => {
    const folder = path.join(scratch(), 'pglite')
    const lockFile = `${folder}.lock`
    const lock = (pid: number) => writeFileSync(lockFile, JSON.stringify({ pid, host: hostname(), boot: null, at: new Date().toISOString() }))

    // The parent of this test process is alive and is not us: the folder is in use.
    lock(process.ppid)
    await t.rejects(acquireDataDirLock(folder), { name: 'DataDirLockedError', message: new RegExp(`in use by process ${process.ppid}`) })

    const stale: Array<[string, () => void]> = [
      ['a dead pid', () => lock(2 ** 22 + 12345)],
      ['our own pid from an earlier life (pid 1 in a restarted container)', () => lock(process.pid)],
      ['another host', () => writeFileSync(lockFile, JSON.stringify({ pid: process.ppid, host: 'elsewhere', boot: null, at: '' }))],
      ['an empty file left by a crash while it was being written', () => {
        writeFileSync(lockFile, '')
        utimesSync(lockFile, new Date(Date.now() - 60_000), new Date(Date.now() - 60_000))
      }]
    ]
    for (const [what, leave] of stale) {
      leave()
      const release = await acquireDataDirLock(folder)
      t.equal(JSON.parse(readFileSync(lockFile, 'utf8')).pid, process.pid, `taken over from ${what}`)
      await t.rejects(acquireDataDirLock(folder), DataDirLockedError, 'and held against a second open in this process')
      release()
      t.notOk(existsSync(lockFile), 'released')
    }
  })

  t.test('close() leaves an injected PGlite open for its owner', embeddedOnly, async (t) => {
    const database = await createTestDatabase()
    t.teardown(() => database.drop())
    const pglite = database.pglite!
    const handle = await openDatabase({ dataDir: '/nonexistent', poolMax: 5, pglite })
    t.same(handle.stats(), { driver: 'pglite', poolMax: 1 })
    await handle.close()
    t.notOk(pglite.closed, 'still open')
    t.same((await pglite.query<{ one: number }>('select 1 as one')).rows, [{ one: 1 }])
    t.notOk(existsSync('/nonexistent'), 'no folder was created for it')
    const again = await openDatabase({ dataDir: '', poolMax: 1, pglite })
    await again.db.execute(sql`select 1`)
  })
}

async function waitFor (condition: () => boolean, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > until) throw new Error('timed out')
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

function kill (child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    child.removeAllListeners('exit')
    child.once('exit', () => resolve())
    child.kill('SIGKILL')
  })
}
