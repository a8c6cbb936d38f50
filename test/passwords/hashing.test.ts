import t from 'tap'
import { threadId as mainThreadId, isMainThread } from 'node:worker_threads'
import Fastify from 'fastify'
import bcrypt from 'bcryptjs'
import { Algorithm, hash as argon2Hash } from '@node-rs/argon2'
import passwords from '../../plugins/app/auth/passwords.ts'
import { loadConfig } from '../../config.ts'
import { hashPassword, verifyPassword } from '../../workers/password.ts'

// Hashing and verification through the plugin's worker pool (SR-1, SR-2, SR-3,
// SR-5, SR-7). Only behaviour is asserted; timings belong to the benchmarks.

async function build (env: Record<string, string> = {}) {
  const app = Fastify()
  app.decorate('config', loadConfig({ NODE_ENV: 'test', ...env }))
  await app.register(passwords)
  await app.ready()
  t.teardown(() => app.close())
  return app
}

const app = await build()
const service = app.passwords
const PHC = /^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/

t.test('SR-1: a 129-character password is refused without hashing', async (t) => {
  const before = { ...service.tasks }
  const tooLong = 'x'.repeat(129)
  await t.rejects(service.hash(tooLong), { code: 'PASSWORD_TOO_LONG', statusCode: 400 }, 'hash refuses')
  await t.rejects(service.hash('z'.repeat(1024 * 1024)), { code: 'PASSWORD_TOO_LONG' }, 'hash refuses 1 MiB')
  t.same(await service.verify(await hashPassword('x'.repeat(128)), tooLong), { ok: false, needsRehash: false }, 'verify answers no')
  t.same(await service.verify(null, tooLong), { ok: false, needsRehash: false }, 'also for an unknown user')
  t.same(service.tasks, before, 'the worker pool was never called')
})

t.test('SR-1: 128 characters still hash and verify', async (t) => {
  const password = '🔒'.repeat(128)
  const stored = await service.hash(password)
  t.match(stored, PHC)
  t.same(await service.verify(stored, password), { ok: true, needsRehash: false })
})

t.test('SR-2: a 100-byte password does not verify by its first 72 bytes', async (t) => {
  for (const password of ['A1b2C3d4E5'.repeat(10), 'é'.repeat(50)]) {
    const bytes = Buffer.from(password)
    t.equal(bytes.length, 100)
    const prefix = bytes.subarray(0, 72).toString()
    const stored = await service.hash(password)
    t.same(await service.verify(stored, password), { ok: true, needsRehash: false }, 'the whole password verifies')
    t.same(await service.verify(stored, prefix), { ok: false, needsRehash: false }, 'its 72-byte prefix does not')
    t.same(await service.verify(stored, password.slice(0, -1)), { ok: false, needsRehash: false }, 'nor all but the last character')
  }
})

t.test('SR-3: spaces, emoji, Arabic and Chinese passwords hash and verify', async (t) => {
  const cases = ['correct horse battery staple', '  leading and trailing  ', '🔒🐉🌵🎲🚀🧩🦊🍀', 'كلمة سر طويلة', '我的密码很安全吗', 'Ελληνικά κωδικός']
  for (const password of cases) {
    service.check(password)
    const stored = await service.hash(password)
    t.match(stored, PHC, password)
    t.same(await service.verify(stored, password), { ok: true, needsRehash: false }, `${password} verifies`)
    t.same(await service.verify(stored, password.trim() === password ? password + ' ' : password.trim()), { ok: false, needsRehash: false }, `${password} is exact (spaces count)`)
  }
  const other = await service.hash('🔒🐉🌵🎲🚀🧩🦊🍀')
  t.same(await service.verify(other, '🔒🐉🌵🎲🚀🧩🍀🦊'), { ok: false, needsRehash: false }, 'emoji order matters')
})

t.test('SR-3: the same letters typed composed or decomposed are one password', async (t) => {
  const composed = 'café crème brûlée'
  const decomposed = composed.normalize('NFD')
  t.not(composed, decomposed)
  const stored = await service.hash(decomposed)
  t.same(await service.verify(stored, composed), { ok: true, needsRehash: false })
})

t.test('SR-5: Argon2id with the OWASP parameters', async (t) => {
  const stored = await service.hash('vT7#qLm2 horse')
  t.match(stored, PHC, '$argon2id$v=19$m=19456,t=2,p=1$...')
  t.not(await service.hash('vT7#qLm2 horse'), stored, 'a new salt each time')
  t.same(await service.verify(stored, 'vT7#qLm2 horse'), { ok: true, needsRehash: false })
  t.same(await service.verify(stored, 'vT7#qLm2 horsE'), { ok: false, needsRehash: false })
})

t.test('SR-5: hashing runs on a worker thread of the pool', async (t) => {
  t.ok(isMainThread)
  const before = service.tasks.hash
  await service.hash('vT7#qLm2 thread')
  t.equal(service.tasks.hash, before + 1, 'the hash went to the pool')
  const workerId = await service.workerThreadId()
  t.type(workerId, 'number')
  t.not(workerId, 0, 'not the main thread (0)')
  t.not(workerId, mainThreadId)
})

t.test('SR-5: legacy bcrypt hashes verify and need a rehash', async (t) => {
  const password = 'old-express-app pässword'
  const legacy = bcrypt.hashSync(password, 10)
  t.match(legacy, /^\$2b\$10\$/)
  for (const variant of [legacy, legacy.replace(/^\$2b\$/, '$2a$'), legacy.replace(/^\$2b\$/, '$2y$')]) {
    t.same(await service.verify(variant, password), { ok: true, needsRehash: true }, variant.slice(0, 4))
    t.same(await service.verify(variant, password + '!'), { ok: false, needsRehash: false }, `${variant.slice(0, 4)} wrong password`)
  }
  // What login does next: re-hash to Argon2id, after which no rehash is due.
  const upgraded = await service.hash(password)
  t.match(upgraded, PHC)
  t.same(await service.verify(upgraded, password), { ok: true, needsRehash: false })
  t.ok(await verifyPassword(legacy, password), 'verifyPassword also reads bcrypt')
})

t.test('SR-5: Argon2 hashes made with other parameters need a rehash', async (t) => {
  const password = 'vT7#qLm2 params'
  const others = [
    await hashPassword(password, { memoryCost: 8192, timeCost: 2, parallelism: 1 }),
    await hashPassword(password, { memoryCost: 19456, timeCost: 3, parallelism: 1 }),
    await hashPassword(password, { memoryCost: 19456, timeCost: 2, parallelism: 2 }),
    await argon2Hash(password, { algorithm: Algorithm.Argon2i, memoryCost: 19456, timeCost: 2, parallelism: 1 })
  ]
  for (const stored of others) {
    t.same(await service.verify(stored, password), { ok: true, needsRehash: true }, stored.split('$').slice(1, 4).join('$'))
    t.same(await service.verify(stored, 'wrong'), { ok: false, needsRehash: false })
  }
  t.same(await service.verify(await hashPassword(password), password), { ok: true, needsRehash: false }, 'current parameters: no rehash')
})

t.test('SR-5: the Argon2 parameters come from the configuration', async (t) => {
  const tuned = await build({ ARGON2_TIME_COST: '3', ARGON2_MEMORY_KIB: '12288' })
  const stored = await tuned.passwords.hash('vT7#qLm2 tuned')
  t.match(stored, /^\$argon2id\$v=19\$m=12288,t=3,p=1\$/)
  t.same(await tuned.passwords.verify(stored, 'vT7#qLm2 tuned'), { ok: true, needsRehash: false })
  t.same(await tuned.passwords.verify(await service.hash('vT7#qLm2 tuned'), 'vT7#qLm2 tuned'), { ok: true, needsRehash: true }, 'an m=19456,t=2 hash is upgraded')
})

t.test('SR-5: unreadable hashes fail verification without throwing', async (t) => {
  const garbage = [
    '', 'not-a-hash', 'vT7#qLm2 plain text', '$argon2id$', '$argon2id$v=19$m=19456,t=2,p=1$bad$bad',
    '$argon2id$v=19$m=0,t=0,p=0$c2FsdHNhbHQ$aGFzaGhhc2g', '$2b$10$short', '$2b$99$' + 'a'.repeat(53),
    '$1$md5crypt$abcdefghijklmnopqrstuv', 'pbkdf2_sha256$600000$salt$hash'
  ]
  for (const stored of garbage) {
    t.same(await service.verify(stored, 'vT7#qLm2'), { ok: false, needsRehash: false }, JSON.stringify(stored))
  }
  t.equal(await verifyPassword('$argon2id$v=19$m=19456,t=2,p=1$bad$bad', 'vT7#qLm2'), false, 'verifyPassword too')
})

t.test('SR-7: an unknown user costs a real Argon2 verification and fails like a wrong password', async (t) => {
  const stored = await service.hash('vT7#qLm2 known')
  const wrong = await service.verify(stored, 'vT7#qLm2 guess')
  for (const missing of [null, undefined, '']) {
    const before = service.tasks.verify
    const unknown = await service.verify(missing, 'vT7#qLm2 guess')
    t.same(unknown, wrong, `${JSON.stringify(missing)}: same answer as a wrong password`)
    t.same(unknown, { ok: false, needsRehash: false })
    t.equal(service.tasks.verify, before + 1, `${JSON.stringify(missing)}: one verification ran in the pool`)
  }
  // The dummy is the random password's hash made at start, so no guess matches it.
  t.same(await service.verify(null, ''), { ok: false, needsRehash: false })
})

t.test('SR-42: the hashing pool closes with the app', async (t) => {
  const closing = await build()
  t.match(await closing.passwords.hash('vT7#qLm2 close'), PHC)
  await closing.close()
  await t.rejects(closing.passwords.hash('vT7#qLm2 close'), { code: 'SERVICE_UNAVAILABLE' }, 'no task after close')
  await t.rejects(closing.passwords.verify(null, 'vT7#qLm2 close'), { code: 'SERVICE_UNAVAILABLE' })
})
