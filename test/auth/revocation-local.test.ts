import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import type { FastifyInstance } from 'fastify'
import { buildContext, stack, testRedisUrl } from '../helpers/build.ts'
import { bearer, createUser, login } from '../helpers/users.ts'
import { LocalAuthState } from '../../plugins/app/auth/local-state.ts'
import type { UserState } from '../../plugins/app/auth/user-state.ts'

// The in-process auth-state cache of the Redis stack (issue 22): what it may serve and when it must not.

const profile = '/api/v1/settings/profile'
const state: UserState = { active: true, permissionVersion: 1, lastUpdated: 0, superAdmin: false, permissions: [], language: 'en', mfaEnrolmentRequired: false }

t.test('LocalAuthState: only confirmed, current, fresh entries are served', async (t) => {
  const local = new LocalAuthState(200, 3)
  const future = Date.now() + 60_000
  local.set(local.seq, 's1', 'u1', state, 0, future)
  t.equal(local.get('s1', 'u1', 0), undefined, 'nothing is stored or served before the subscription is confirmed')

  local.alive()
  local.set(local.seq, 's1', 'u1', state, 0, future)
  t.equal(local.get('s1', 'u1', 0)?.user.state, state, 'a confirmed entry is served')
  t.equal(local.get('s1', 'u1', 1), undefined, 'not once the trusted generation is newer (state-cache.ts)')
  local.set(local.seq, 's1', 'u1', state, 0, future)
  t.equal(local.get('s1', 'u1', -1), undefined, 'nor while the cache is not trusted at all')

  // The fill race: a read that began before an invalidation is not stored.
  const seq = local.seq
  local.invalidate('u2')
  local.set(seq, 's2', 'u2', state, 0, future)
  t.equal(local.get('s2', 'u2', 0), undefined, 'a fill that raced with an invalidation is dropped')

  local.set(local.seq, 's3', 'u3', state, 0, future)
  local.set(local.seq, 's4', 'u3', state, 0, future)
  local.invalidate('u3')
  t.equal(local.get('s3', 'u3', 0), undefined, 'a user invalidation drops all their sessions')
  t.equal(local.get('s4', 'u3', 0), undefined)
  local.set(local.seq, 's4', 'u3', state, 0, future)
  t.equal(local.get('s3', 'u3', 0), undefined, 'refilling one session does not revive another')

  for (const id of ['a', 'b', 'c', 'd']) local.set(local.seq, id, 'u9', state, 0, future)
  t.ok(local.size <= 3, 'bounded')

  local.set(local.seq, 's5', 'u5', state, 0, future)
  local.lose()
  t.equal(local.get('s5', 'u5', 0), undefined, 'a lost subscription drops everything')
  local.alive()
  t.equal(local.get('s5', 'u5', 0), undefined, 'and it does not come back with the subscription')

  local.set(local.seq, 's6', 'u6', state, 0, future)
  await sleep(250)
  local.alive()
  t.equal(local.get('s6', 'u6', 0), undefined, 'the hard TTL bounds an entry')
})

t.test('LocalAuthState: a silent subscription (no PING answered) stops serving', async (t) => {
  const local = new LocalAuthState(60_000, 10)
  local.alive()
  local.set(local.seq, 's1', 'u1', state, 0, Date.now() + 60_000)
  t.ok(local.get('s1', 'u1', 0))
  await sleep(1100)
  t.equal(local.get('s1', 'u1', 0), undefined, 'without a heartbeat for 2 x HEARTBEAT_MS nothing is served')
})

async function readStatus (app: FastifyInstance, token: string) {
  return (await app.inject({ url: profile, headers: bearer(token) })).statusCode
}

if (stack === 'embedded') {
  t.test('SR-20: embedded stack: a logout is refused on the very next request (no local copy there)', async (t) => {
    const { app } = await buildContext(t)
    const u = await createUser(app)
    const tokens = await login(app, u.email!)
    t.equal(await readStatus(app, tokens.session_token), 200)
    t.equal((await app.inject({ method: 'POST', url: '/api/v1/auth/logout', headers: bearer(tokens.session_token), payload: {} })).statusCode, 200)
    t.equal(await readStatus(app, tokens.session_token), 401)
  })
} else {
  const raw = new Redis(testRedisUrl, { maxRetriesPerRequest: 1 })
  t.teardown(() => raw.disconnect())
  // Many logins from one address: the per-route limits stay out of the way.
  const generousLimits = { AUTH_RATE_LIMIT_PER_IP: '10000', AUTH_RATE_LIMIT_PER_IDENTIFIER: '10000' }

  /** Writes a revocation into Redis the way no instance would: without announcing it. */
  const revokeSilently = (prefix: string, userId: string, sessionId: string) => raw.set(`${prefix}{${userId}}:s:${sessionId}`, 'r', 'PX', 60_000)

  t.test('SR-20: a logout on one instance is refused on another that holds the session locally, well before the hard TTL', async (t) => {
    const { app: a, another } = await buildContext(t, { ...generousLimits, AUTH_LOCAL_CACHE_TTL_MS: '10000' })
    const b = await another()
    for (let trial = 0; trial < 20; trial++) {
      const u = await createUser(a)
      const tokens = await login(a, u.email!)
      t.equal(await readStatus(b, tokens.session_token), 200)
      t.equal(await readStatus(b, tokens.session_token), 200)
      t.equal((await a.inject({ method: 'POST', url: '/api/v1/auth/logout', headers: bearer(tokens.session_token), payload: {} })).statusCode, 200)
      const acknowledged = Date.now()
      let status = await readStatus(b, tokens.session_token)
      while (status === 200 && Date.now() - acknowledged < 10_000) {
        await sleep(2)
        status = await readStatus(b, tokens.session_token)
      }
      t.equal(status, 401, 'refused')
      t.ok(Date.now() - acknowledged < 500, `within 500 ms of the logout (took ${Date.now() - acknowledged} ms)`)
    }
  })

  /** Logs in and reads once on `app`: the session is hot there. */
  const hotSession = async (app: FastifyInstance, email: string) => {
    const tokens = await login(app, email)
    t.equal(await readStatus(app, tokens.session_token), 200)
    return tokens
  }

  /**
   * Waits until `app` serves a hot session from its local copy: a revocation written
   * to Redis without announcement is not seen then. The subscription is confirmed a
   * moment after start and after each reconnect.
   */
  const localCopyInUse = async (app: FastifyInstance, prefix: string, u: { user_id: string, email: string | null }) => {
    for (let i = 0; i < 100; i++) {
      const tokens = await hotSession(app, u.email!)
      await revokeSilently(prefix, u.user_id, tokens.session_id)
      if (await readStatus(app, tokens.session_token) === 200) return true
      await sleep(50)
    }
    return false
  }

  t.test('the local copy is used, and the hard TTL bounds a write that was never announced', async (t) => {
    const { app, prefix } = await buildContext(t, { ...generousLimits, AUTH_LOCAL_CACHE_TTL_MS: '1000' })
    const u = await createUser(app)
    t.ok(await localCopyInUse(app, prefix, u), 'served from the local copy: Redis was not asked')
    const tokens = await hotSession(app, u.email!)
    await revokeSilently(prefix, u.user_id, tokens.session_id)
    const written = Date.now()
    while (await readStatus(app, tokens.session_token) === 200 && Date.now() - written < 5000) await sleep(20)
    const seenAfter = Date.now() - written
    t.ok(seenAfter < 1000 + 1000, `past the hard TTL Redis is asked again (after ${seenAfter} ms)`)
  })

  t.test('SR-20: with the invalidation connection killed, no request is served from a local entry', async (t) => {
    const { app, prefix } = await buildContext(t, { ...generousLimits, AUTH_LOCAL_CACHE_TTL_MS: '10000' })
    const u = await createUser(app)
    const killSubscriber = async () => {
      const clients = (await raw.call('CLIENT', 'LIST', 'TYPE', 'pubsub') as string).split('\n').filter((line) => line.includes(` name=${prefix}auth-invalidation `))
      t.equal(clients.length, 1, 'the instance has one invalidation connection')
      const id = /(?:^|\s)id=(\d+)/.exec(clients[0])![1]
      await raw.call('CLIENT', 'KILL', 'ID', id)
    }
    // The control: a write that is not announced is not seen while the copy is in use.
    t.ok(await localCopyInUse(app, prefix, u), 'the local copy is in use before the cut')

    for (let round = 0; round < 5; round++) {
      const tokens = await hotSession(app, u.email!)
      t.equal(await readStatus(app, tokens.session_token), 200)
      await killSubscriber()
      await revokeSilently(prefix, u.user_id, tokens.session_id)
      t.equal(await readStatus(app, tokens.session_token), 401, `round ${round}: refused: the local copy went with the connection`)
      t.ok(await localCopyInUse(app, prefix, u), `round ${round}: the local copy is used again once the subscription is confirmed`)
    }
  })
}
