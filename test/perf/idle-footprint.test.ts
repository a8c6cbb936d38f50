import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import Fastify from 'fastify'
import { sql } from 'drizzle-orm'
import passwords, { unmatchableHash } from '../../plugins/app/auth/passwords.ts'
import { loadConfig } from '../../config.ts'
import { executeRows, openDatabase } from '../../db/client.ts'
import { verify } from '../../workers/password.ts'
import { createEmbeddedDataDir, testDatabaseMode } from '../helpers/database.ts'

// What an idle instance holds (issue 9: idle RSS under 150 MB). Only behaviour
// is asserted here; the megabytes are measured by `npm run bench`.

t.test('the hashing pool starts no thread until the first task (SR-5 still: the task runs in one)', async (t) => {
  const app = Fastify()
  app.decorate('config', loadConfig({ NODE_ENV: 'test', HASH_POOL_THREADS: '2' }))
  await app.register(passwords)
  await app.ready()
  t.teardown(() => app.close())
  t.equal(app.passwords.threads(), 0, 'no thread after start')
  t.same(app.passwords.tasks, { hash: 0, verify: 0, threadId: 0 }, 'and no task ran at start')
  t.same(await app.passwords.verify(null, 'vT7#qLm2 unknown user'), { ok: false, needsRehash: false }, 'an unknown user is refused')
  t.equal(app.passwords.tasks.verify, 1, 'after a real verification in the pool (SR-7)')
  t.ok(app.passwords.threads() >= 1, 'a thread started with the first task')
  t.not(await app.passwords.workerThreadId(), 0)
})

t.test('the stand-in hash of unknown users has the live parameters and matches nothing', async (t) => {
  const params = { memoryCost: 8192, timeCost: 3, parallelism: 2 }
  const stand = unmatchableHash(params)
  t.match(stand, /^\$argon2id\$v=19\$m=8192,t=3,p=2\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/)
  t.not(unmatchableHash(params), stand, 'random salt and digest each time')
  for (const guess of ['', 'password', stand]) {
    t.same(verify({ hash: stand, password: guess, params }), { ok: false, needsRehash: false }, `refuses ${JSON.stringify(guess.slice(0, 12))}`)
  }
})

t.test('the embedded database runs with a small buffer pool', { skip: testDatabaseMode !== 'embedded' && 'embedded mode only' }, async (t) => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'idle-footprint-'))
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  await createEmbeddedDataDir(dataDir)
  const handle = await openDatabase({ dataDir, poolMax: 1 })
  t.teardown(() => handle.close())
  const [row] = await executeRows<{ shared_buffers: string }>(handle.db, sql`show shared_buffers`)
  t.equal(row.shared_buffers, '16MB')
})
