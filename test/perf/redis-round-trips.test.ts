import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Redis } from 'ioredis'
import type { FastifyInstance } from 'fastify'
import { build, stack } from '../helpers/build.ts'
import { bearer, createUser, login } from '../helpers/users.ts'

/**
 * Issue 9: one pipelined Redis round trip per authenticated request at most. The
 * auth-state MGET and the rate-limit script must leave in one write to the Redis
 * socket (authentication starts in onRequest, the rate-limit hook sends its command
 * in the same event-loop turn, ioredis auto-pipelining sends both at once).
 * Issue 22: with the local auth cache and the batched global limit (the defaults),
 * a hot session's read sends nothing; the exact modes keep issue 9's single write.
 */
function watchWrites (app: FastifyInstance, t: { teardown: (fn: () => void) => void }) {
  const stream = (app.redis as unknown as Redis & { stream: { write: (chunk: unknown, ...rest: unknown[]) => boolean } }).stream
  const write = stream.write
  const writes: string[] = []
  stream.write = function (this: unknown, chunk: unknown, ...rest: unknown[]) {
    writes.push(String(chunk))
    return write.call(this, chunk, ...rest)
  }
  t.teardown(() => { stream.write = write })
  return writes
}

t.test('issue 22: a hot session\'s read sends nothing to Redis; the global limit goes out in one batch', { skip: stack === 'postgres' ? false : 'the embedded stack has no Redis' }, async (t) => {
  const app = await build(t, { RATE_LIMIT_SYNC_MS: '100' })
  const account = await createUser(app)
  const tokens = await login(app, account.email!)
  const url = '/api/v1/settings/profile'
  t.equal((await app.inject({ url, headers: bearer(tokens.session_token) })).statusCode, 200)
  await sleep(300)
  const writes = watchWrites(app, t)
  for (let i = 0; i < 10; i++) t.equal((await app.inject({ url, headers: bearer(tokens.session_token) })).statusCode, 200)
  t.equal(writes.length, 0, 'ten reads, no write to Redis')
  await sleep(300)
  t.equal(writes.length, 1, 'one write after the sync interval')
  t.equal(writes.join('').match(/evalsha/gi)?.length, 1, 'one script call for the one active key')
})

t.test('an authenticated read sends one write to Redis: the state MGET and the rate-limit script together (exact modes)', { skip: stack === 'postgres' ? false : 'the embedded stack has no Redis' }, async (t) => {
  const app = await build(t, { AUTH_LOCAL_CACHE_TTL_MS: '0', RATE_LIMIT_SYNC_MS: '0' })
  const account = await createUser(app)
  const tokens = await login(app, account.email!)
  const url = '/api/v1/settings/profile'
  // Warm: the state is cached and the rate-limit script is loaded (EVALSHA from now on).
  for (const token of [tokens.session_token, tokens.access_token]) t.equal((await app.inject({ url, headers: bearer(token) })).statusCode, 200)

  const writes = watchWrites(app, t)
  for (const [kind, token] of [['session', tokens.session_token], ['access', tokens.access_token]] as const) {
    writes.length = 0
    const res = await app.inject({ url, headers: bearer(token) })
    t.equal(res.statusCode, 200, `${kind} token: 200`)
    t.equal(writes.length, 1, `${kind} token: one write to Redis`)
    t.match(writes.join(''), /mget/i, `${kind} token: the auth state is read`)
    t.match(writes.join(''), /evalsha/i, `${kind} token: the request is counted by the rate limit`)
  }
})
