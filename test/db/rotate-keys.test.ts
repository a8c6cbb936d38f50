import { spawn } from 'node:child_process'
import path from 'node:path'
import t from 'tap'
import { buildContext, stack, testSecret } from '../helpers/build.ts'
import { root } from '../helpers/processes.ts'
import { decodeJwt } from '../helpers/tokens.ts'
import { bearer, createUser, login } from '../helpers/users.ts'

// issue 20: `npm run rotate-keys` beside a running server (PostgreSQL).

const tsx = import.meta.resolve('tsx')

function rotateKeys (env: Record<string, string>, args: string[] = []): Promise<{ code: number | null, stdout: string, stderr: string }> {
  return new Promise((resolve) => {
    // cwd: the test's data folder, which has no .env.
    const child = spawn(process.execPath, ['--import', tsx, path.join(root, 'db', 'rotate-keys.ts'), ...args], { cwd: env.DATA_DIR, env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => { stdout += d })
    child.stderr.on('data', (d) => { stderr += d })
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}

t.test('rotate-keys beside a running server: a new key, which the server picks up; earlier tokens keep working', { skip: stack !== 'postgres' && 'the embedded test database is an in-process PGlite no script can reach (the CLI refuses a folder a server holds, like create-admin)' }, async (t) => {
  const ctx = await buildContext(t)
  const { app } = ctx
  const env = { NODE_ENV: 'test', LOG_LEVEL: 'silent', JWT_SECRET_KEY: testSecret, DATABASE_URL: ctx.env.DATABASE_URL, DATA_DIR: ctx.env.DATA_DIR }
  const u = await createUser(app)
  const before = await login(app, u.email!)
  const oldKid = decodeJwt(before.access_token).header.kid

  const notDue = await rotateKeys(env, ['--if-due'])
  t.equal(notDue.code, 0, notDue.stderr)
  t.match(notDue.stdout, `not due: ${oldKid}`)

  const run = await rotateKeys(env)
  t.equal(run.code, 0, run.stderr)
  const newKid = /rotated: signing with (\S+)/.exec(run.stdout)?.[1]
  t.ok(newKid, run.stdout)
  t.not(newKid, oldKid)

  // The server re-reads the keys every minute (and for a token naming an unknown kid); here at once.
  await app.signingKeys.refresh()
  const after = await login(app, u.email!)
  t.equal(decodeJwt(after.access_token).header.kid, newKid, 'the server signs with the new key')
  t.equal((await app.inject({ url: '/api/v1/settings/profile', headers: bearer(before.access_token) })).statusCode, 200, 'a token of the old key still works')
  const kids = ((await app.inject({ url: '/.well-known/jwks.json' })).json() as { keys: Array<{ kid: string }> }).keys.map((k) => k.kid)
  t.same(kids.sort(), [oldKid, newKid].sort(), 'both published')

  const usage = await rotateKeys(env, ['--bogus'])
  t.equal(usage.code, 2, 'bad usage')
})
