import t from 'tap'
import bcrypt from 'bcryptjs'
import { eq } from 'drizzle-orm'
import { user } from '../../db/schema/index.ts'
import { build } from '../helpers/build.ts'
import { createUser } from '../helpers/users.ts'

// SR-2 / SR-5: a legacy bcrypt hash only ever saw a password's first 72 bytes. An
// input of 72 bytes or more can therefore match by its prefix alone; it must not
// log in, and above all must not be rehashed (which would lock the owner out).
const loginUrl = '/api/v1/auth/login-with-password'
const long = 'L0ng-legacy-passphrase/'.repeat(5).slice(0, 100)
const prefix = long.slice(0, 72)

t.test('SR-2: a bcrypt hash of a 100-byte password is not opened by its 72-byte prefix plus junk', async (t) => {
  t.equal(Buffer.byteLength(long), 100)
  const app = await build(t, { LOGIN_LOCKOUT_THRESHOLD: '100' })
  const legacy = bcrypt.hashSync(long, 4)
  t.ok(bcrypt.compareSync(`${prefix}JUNK`, legacy), 'bcrypt itself does match the junk')
  const u = await createUser(app, { email: 'long-legacy@example.com', passwordHash: legacy })
  const attempt = (password: string) => app.inject({ method: 'POST', url: loginUrl, payload: { identifier: u.email!, password } })

  for (const [label, password] of [['72 bytes + JUNK', `${prefix}JUNK`], ['the 72-byte prefix', prefix], ['the whole 100-byte password', long]]) {
    const res = await attempt(password)
    t.equal(res.statusCode, 401, `${label}: refused like a wrong password`)
    t.equal(res.json().error.code, 'AUTH_INVALID_CREDENTIALS')
    const [row] = await app.db.select({ password: user.password }).from(user).where(eq(user.user_id, u.user_id))
    t.equal(row.password, legacy, `${label}: the legacy hash is kept, nothing is rehashed`)
  }
})

t.test('SR-5: a legacy bcrypt password under 72 bytes still logs in and moves to Argon2id', async (t) => {
  const app = await build(t)
  const password = 'é'.repeat(35) // 70 bytes
  t.equal(Buffer.byteLength(password), 70)
  const u = await createUser(app, { passwordHash: bcrypt.hashSync(password, 4) })
  const res = await app.inject({ method: 'POST', url: loginUrl, payload: { identifier: u.email!, password } })
  t.equal(res.statusCode, 200)
  const [row] = await app.db.select({ password: user.password }).from(user).where(eq(user.user_id, u.user_id))
  t.match(row.password, /^\$argon2id\$/)
})

t.test('SR-2: the verifier refuses bcrypt matches at 72 bytes or more, in bytes not characters', async (t) => {
  const app = await build(t)
  const multibyte = 'é'.repeat(40) // 40 characters, 80 bytes
  const cases: Array<[string, string, boolean]> = [
    ['71 bytes', 'x'.repeat(71), true],
    ['72 bytes', 'x'.repeat(72), false],
    ['80 bytes in 40 characters', multibyte, false]
  ]
  for (const [label, password, ok] of cases) {
    const stored = bcrypt.hashSync(password, 4)
    t.same(await app.passwords.verify(stored, password), ok ? { ok: true, needsRehash: true } : { ok: false, needsRehash: false }, label)
  }
})
