import t, { type Test } from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import type { FastifyInstance } from 'fastify'
import { buildContext, stack } from '../helpers/build.ts'
import { bearer, createUser, defaultPassword, login } from '../helpers/users.ts'
import { freePort } from '../helpers/processes.ts'
import { TcpProxy } from '../helpers/tcp-proxy.ts'

/**
 * SR-20, SR-21, SR-41: a revocation made while Redis cannot take it (down, or cut
 * off mid-request) must not come back when Redis does, whether Redis restarts from
 * a snapshot taken before the revocation or a partition heals. The old tokens are
 * refused on the very first request once /health/ready says ready again.
 */
const api = '/api/v1'
const profile = `${api}/settings/profile`
const skip = stack === 'embedded' ? 'needs a real Redis server (the embedded store is in-process)' : false

/** A redis-server that persists to a folder of its own: SAVE, kill, and restart from the snapshot. */
class SnapshotRedis {
  port = 0
  readonly dir = mkdtempSync(path.join(tmpdir(), 'redis-snapshot-'))
  private child?: ChildProcess

  get url () { return `redis://127.0.0.1:${this.port}` }

  async start () {
    if (this.port === 0) this.port = await freePort()
    this.child = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, '--dbfilename', 'dump.rdb', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' })
    for (let i = 0; i < 100; i++) {
      try {
        await this.command((c) => c.ping())
        return
      } catch {
        await sleep(50)
      }
    }
    throw new Error('redis-server did not start')
  }

  async command<T> (fn: (client: Redis) => Promise<T>): Promise<T> {
    const client = new Redis(this.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
    client.on('error', () => {}) // a refused connection rejects connect() below
    try {
      await client.connect()
      return await fn(client)
    } finally {
      client.disconnect()
    }
  }

  async kill () {
    const child = this.child
    if (!child || child.exitCode !== null || child.signalCode !== null) return
    await new Promise<void>((resolve) => { child.once('exit', () => resolve()); child.kill('SIGKILL') })
  }

  async close () {
    await this.kill()
    rmSync(this.dir, { recursive: true, force: true })
  }
}

interface Setup {
  redis: SnapshotRedis
  proxy: TcpProxy
  app: FastifyInstance
  prefix: string
  another: (env?: Record<string, string>) => Promise<FastifyInstance>
}

/** The app reaches Redis through a proxy, so the test can also cut it off without stopping Redis. */
async function setup (t: Test): Promise<Setup> {
  const redis = new SnapshotRedis()
  await redis.start()
  const proxy = new TcpProxy(redis.port)
  await proxy.start()
  t.teardown(async () => { await proxy.stop(); await redis.close() })
  const ctx = await buildContext(t, { REDIS_URL: `redis://127.0.0.1:${proxy.port}`, REDIS_COMMAND_TIMEOUT_MS: '2000' })
  return { redis, proxy, app: ctx.app, prefix: ctx.prefix, another: async (env) => ctx.another(env) }
}

const status = async (app: FastifyInstance, token: string) => (await app.inject({ url: profile, headers: bearer(token) })).statusCode

async function waitReady (t: Test, app: FastifyInstance) {
  const deadline = Date.now() + 20_000
  for (;;) {
    if ((await app.inject('/health/ready')).statusCode === 200) return
    if (Date.now() > deadline) { t.fail('/health/ready never answered 200'); return }
    await sleep(100)
  }
}

/** Restarts Redis from the snapshot taken before the revocation, and shows the snapshot brought the stale entries back. */
async function restartFromSnapshot (t: Test, s: Setup, sessionId: string, userId: string, proxyCut = false) {
  await s.redis.kill()
  await s.redis.start()
  const [session, state] = await s.redis.command((c) => c.mget(`${s.prefix}{${userId}}:s:${sessionId}`, `${s.prefix}{${userId}}:u`))
  t.match(session, /^a:/, 'the snapshot brought back the session entry from before the revocation')
  t.match(state, /"a":true/, 'and the user entry saying the user is active')
  if (proxyCut) await s.proxy.start()
  await waitReady(t, s.app)
}

t.test('SR-21: a user deactivated by an admin while Redis is down stays out after Redis restarts from an older snapshot', { skip }, async (t) => {
  const s = await setup(t)
  const admin = await createUser(s.app, { groups: ['super_admin'] })
  const u = await createUser(s.app)
  const adminTokens = await login(s.app, admin.email!)
  const tokens = await login(s.app, u.email!)
  t.equal(await status(s.app, tokens.access_token), 200, 'cached as active')
  t.equal(await status(s.app, tokens.session_token), 200)
  await s.redis.command((c) => c.save())

  await s.redis.kill()
  const res = await s.app.inject({ method: 'PUT', url: `${api}/users/${u.user_id}/status`, headers: bearer(adminTokens.access_token), payload: { is_active: false } })
  t.equal(res.statusCode, 200, 'deactivated while Redis is down')
  t.equal(await status(s.app, tokens.access_token), 401, 'refused while Redis is down (PostgreSQL)')

  await restartFromSnapshot(t, s, tokens.session_id, u.user_id)
  t.equal(await status(s.app, tokens.access_token), 401, 'the first request after ready is refused: access token')
  t.equal(await status(s.app, tokens.session_token), 401, 'and session token')
  t.equal(await status(s.app, adminTokens.access_token), 200, 'the admin, still active, keeps working')
})

t.test('SR-20: a logout made while Redis is down stays done after Redis restarts from an older snapshot', { skip }, async (t) => {
  const s = await setup(t)
  const u = await createUser(s.app)
  const kept = await login(s.app, u.email!)
  const tokens = await login(s.app, u.email!)
  t.equal(await status(s.app, tokens.access_token), 200)
  t.equal(await status(s.app, kept.access_token), 200)
  await s.redis.command((c) => c.save())

  await s.redis.kill()
  const res = await s.app.inject({ method: 'POST', url: `${api}/auth/logout`, headers: bearer(tokens.access_token) })
  t.equal(res.statusCode, 200, 'logged out while Redis is down')

  await restartFromSnapshot(t, s, tokens.session_id, u.user_id)
  t.equal(await status(s.app, tokens.session_token), 401, 'the first request after ready is refused: session token')
  t.equal(await status(s.app, tokens.access_token), 401, 'and access token')
  t.equal(await status(s.app, kept.access_token), 200, 'the other session keeps working')
})

t.test('SR-20: a password change whose revocation write is cut off stays done after Redis restarts from an older snapshot', { skip }, async (t) => {
  const s = await setup(t)
  const u = await createUser(s.app)
  const current = await login(s.app, u.email!)
  const other = await login(s.app, u.email!)
  t.equal(await status(s.app, other.access_token), 200)
  await s.redis.command((c) => c.save())

  // A password change needs Redis for its rate limit, so Redis goes away at the revocation write itself.
  const revocationWrite = Buffer.from(`s:${other.session_id}`)
  s.proxy.cutAt((chunk) => chunk.includes(revocationWrite))
  const res = await s.app.inject({
    method: 'POST',
    url: `${api}/auth/change-password`,
    headers: bearer(current.access_token),
    payload: { current_password: defaultPassword, new_password: 'an entirely new passphrase 4711' }
  })
  t.equal(res.statusCode, 200, 'the password is changed')
  t.equal(res.json().data.revoked_sessions, 1)

  await restartFromSnapshot(t, s, other.session_id, u.user_id, true)
  t.equal(await status(s.app, other.access_token), 401, 'the first request after ready is refused: the other session\'s access token')
  t.equal(await status(s.app, other.session_token), 401, 'and its session token')
  t.equal(await status(s.app, current.access_token), 200, 'the session that changed the password continues')
})

t.test('SR-20, SR-21: partition: a revocation instance A cannot write is not undone when A reconnects, and instance B stops trusting the old entries', { skip }, async (t) => {
  const s = await setup(t)
  // B reaches the same Redis directly, so it never sees the partition.
  const b = await s.another({ REDIS_URL: s.redis.url })
  const admin = await createUser(s.app, { groups: ['super_admin'] })
  const u = await createUser(s.app)
  const adminTokens = await login(s.app, admin.email!)
  const tokens = await login(s.app, u.email!)
  t.equal(await status(s.app, tokens.access_token), 200)
  t.equal(await status(b, tokens.access_token), 200, 'B has the active entries too')

  await s.proxy.stop()
  const res = await s.app.inject({ method: 'PUT', url: `${api}/users/${u.user_id}/status`, headers: bearer(adminTokens.access_token), payload: { is_active: false } })
  t.equal(res.statusCode, 200, 'A deactivates the user while cut off from Redis')
  const [session, state] = await s.redis.command((c) => c.mget(`${s.prefix}{${u.user_id}}:s:${tokens.session_id}`, `${s.prefix}{${u.user_id}}:u`))
  t.match(session, /^a:/, 'Redis still says the session is active')
  t.match(state, /"a":true/, 'and the user')

  // B learns the new generation from PostgreSQL within a poll interval.
  const deadline = Date.now() + 3000
  let refusedByB = false
  while (!refusedByB && Date.now() < deadline) {
    refusedByB = await status(b, tokens.access_token) === 401
    if (!refusedByB) await sleep(100)
  }
  t.ok(refusedByB, 'B refuses the token within seconds, not after AUTH_STATE_CACHE_SECONDS')

  await s.proxy.start()
  await waitReady(t, s.app)
  t.equal(await status(s.app, tokens.access_token), 401, 'A, reconnected, refuses it on the first request')
  t.equal(await status(s.app, tokens.session_token), 401)
  t.equal(await status(b, tokens.session_token), 401)
  t.equal(await status(b, adminTokens.access_token), 200, 'valid tokens keep working on B')
  t.equal(await status(s.app, adminTokens.access_token), 200, 'and on A')
})
