import t from 'tap'
import Fastify from 'fastify'
import passwords from '../../plugins/app/auth/passwords.ts'
import { loadConfig } from '../../config.ts'

// The password rules that run before any hashing: length (SR-1, SR-3) and the
// common-password list (SR-4).

async function build (env: Record<string, string> = {}) {
  const app = Fastify()
  app.decorate('config', loadConfig({ NODE_ENV: 'test', ...env }))
  await app.register(passwords)
  await app.ready()
  t.teardown(() => app.close())
  return app
}

const app = await build()
const { check } = app.passwords

t.test('SR-1: minimum 8 and maximum 128 characters', async (t) => {
  t.throws(() => check('vT7#qLm'), { code: 'PASSWORD_TOO_SHORT', statusCode: 400, params: { min: 8, max: 128 } }, '7 characters')
  t.throws(() => check(''), { code: 'PASSWORD_TOO_SHORT' }, 'empty')
  t.doesNotThrow(() => check('vT7#qLm2'), '8 characters')
  t.doesNotThrow(() => check('x'.repeat(64) + 'y'.repeat(64)), '128 characters')
  t.throws(() => check('x'.repeat(64) + 'y'.repeat(65)), { code: 'PASSWORD_TOO_LONG', statusCode: 400, params: { min: 8, max: 128 } }, '129 characters')
  t.throws(() => check('z'.repeat(1024 * 1024)), { code: 'PASSWORD_TOO_LONG' }, 'a whole 1 MiB body')
})

t.test('SR-1: the limits come from the configuration', async (t) => {
  const strict = await build({ PASSWORD_MIN_LENGTH: '12', PASSWORD_MAX_LENGTH: '20' })
  t.throws(() => strict.passwords.check('vT7#qLm2xyz'), { code: 'PASSWORD_TOO_SHORT', params: { min: 12, max: 20 } }, '11 < 12')
  t.doesNotThrow(() => strict.passwords.check('vT7#qLm2xyzw'), '12')
  t.throws(() => strict.passwords.check('vT7#qLm2xyzw' + 'abcdefghi'), { code: 'PASSWORD_TOO_LONG', params: { min: 12, max: 20 } }, '21 > 20')
})

t.test('SR-3: length counts Unicode code points, not UTF-16 units or bytes', async (t) => {
  const eightEmoji = '🔒🐉🌵🎲🚀🧩🦊🍀'
  t.equal(eightEmoji.length, 16, 'the emoji password is 16 UTF-16 units')
  t.doesNotThrow(() => check(eightEmoji), '8 emoji are 8 characters')
  t.throws(() => check('🔒🐉🌵🎲🚀🧩🦊'), { code: 'PASSWORD_TOO_SHORT' }, '7 emoji are too short although 14 units')
  const maxEmoji = '🔒🐉🌵🎲🚀🧩🦊🍀'.repeat(16)
  t.equal(Buffer.byteLength(maxEmoji), 512, '128 emoji are 512 bytes')
  t.doesNotThrow(() => check(maxEmoji), '128 emoji are 128 characters')
  t.throws(() => check(maxEmoji + '🍀'), { code: 'PASSWORD_TOO_LONG' }, '129 emoji')
  t.doesNotThrow(() => check('我的密码很安全吗'), '8 Chinese characters (24 bytes)')
})

t.test('SR-3: no composition rules beyond length', async (t) => {
  for (const password of ['lowercaseonlypassphrase', 'correct horse battery staple', '98317462059', 'كلمة سر طويلة', 'ПАРОЛЬДЛЯВХОДА']) {
    t.doesNotThrow(() => check(password), password)
  }
})

t.test('SR-4: common passwords are refused with WEAK_PASSWORD, in any case', async (t) => {
  for (const password of ['password', '12345678', 'qwertyuiop', 'iloveyou', 'sunshine', 'trustno1', 'PASSWORD', 'IloveYou', 'QwErTyUiOp', 'P@ssw0rd']) {
    t.throws(() => check(password), { code: 'WEAK_PASSWORD', statusCode: 400 }, password)
  }
})

t.test('SR-4: the check does not hash', async (t) => {
  const before = { ...app.passwords.tasks }
  for (const password of ['password', 'vT7#qLm2', 'short', 'x'.repeat(200)]) {
    try { check(password) } catch {}
  }
  t.same(app.passwords.tasks, before, 'no task reached the worker pool')
})
