import t, { type Test } from 'tap'
import { PrivateRedis } from '../helpers/redis-server.ts'
import { TcpProxy } from '../helpers/tcp-proxy.ts'
import { createUser, defaultPassword } from '../helpers/users.ts'
import type { ServerProcess } from '../helpers/processes.ts'
import { e2eSkipReason, prefix, startCluster, type Reply } from '../helpers/cluster.ts'

// Several real processes start here; on a busy machine that takes a while. Bounded all the same.
t.setTimeout(420_000)

/**
 * Outages of PostgreSQL and Redis under real API processes behind Caddy. The
 * shared servers other test files use are never stopped: PostgreSQL is reached
 * through a TCP proxy this file cuts and restores, Redis is a private
 * redis-server this file stops and starts again (empty) on the same port.
 */
t.test('PostgreSQL and Redis outages behind Caddy', { skip: e2eSkipReason() }, async (t) => {
  const redis = new PrivateRedis()
  await redis.start()
  t.teardown(() => redis.stop())
  let postgresProxy: TcpProxy | undefined
  t.teardown(() => postgresProxy?.stop())

  const { ctx, a, b, caddy, clients } = await startCluster(t, {
    env: async (base) => {
      const direct = new URL(base.DATABASE_URL)
      postgresProxy = new TcpProxy(Number(direct.port || 5432))
      const proxied = new URL(direct)
      proxied.hostname = '127.0.0.1'
      proxied.port = String(await postgresProxy.start())
      return { DATABASE_URL: proxied.toString(), REDIS_URL: redis.url }
    }
  })
  const proxy = postgresProxy!
  const instances = [a, b]
  const pids = instances.map((s) => s.pid)
  const user = await createUser(ctx.app)
  const viaCaddy = (path: string, opts: Parameters<typeof clients.call>[1] = {}) => clients.call(`${caddy.url}${path}`, opts)
  const login = () => viaCaddy(`${prefix}/auth/login-with-password`, { method: 'POST', json: { identifier: user.email, password: defaultPassword } })
  const profile = (server: ServerProcess, token: string) => clients.call(`${server.url}${prefix}/settings/profile`, { headers: { authorization: `Bearer ${token}` } })
  const stillTheSameProcesses = (t: Test) => {
    t.same(instances.map((s) => s.running), [true, true], 'both API processes are still running')
    t.same(instances.map((s) => s.pid), pids, 'and were never restarted')
  }
  const until200 = async (path: string) => {
    let last: Reply | undefined
    for (let i = 0; i < 75; i++) {
      last = await viaCaddy(path)
      if (last.status === 200) return last
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
    return last!
  }

  const untilReady = async (server: ServerProcess) => {
    let last: Reply | undefined
    for (let i = 0; i < 75; i++) {
      last = await clients.call(`${server.url}/health/ready`)
      if (last.status === 200) return last
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
    return last!
  }

  const kept = (await login()).body.data as { access_token: string }
  const revoked = (await login()).body.data as { access_token: string }
  t.ok(kept?.access_token && revoked?.access_token, 'two sessions')
  t.equal((await viaCaddy(`${prefix}/auth/logout`, { method: 'POST', headers: { authorization: `Bearer ${revoked.access_token}` } })).status, 200, 'one of them logged out')

  await t.test('SR-40: PostgreSQL down: readiness and data routes answer 503 with the envelope; recovery without a restart', async (t) => {
    await proxy.stop()

    for (const server of instances) {
      const ready = await clients.call(`${server.url}/health/ready`)
      t.equal(ready.status, 503, `${server.label}: /health/ready is 503`)
      t.equal(ready.body.error?.code, 'SERVICE_UNAVAILABLE')
      t.equal(ready.body.error?.details?.database?.status, 'down', 'naming the database')
    }
    const ready = await viaCaddy('/health/ready')
    t.equal(ready.status, 503, 'through Caddy too (the instance\'s answer, not Caddy\'s)')
    t.equal(ready.body.error?.details?.database?.status, 'down')

    const database = await viaCaddy(`${prefix}/health/database`)
    t.equal(database.status, 503)
    t.equal(database.body.error?.code, 'SERVICE_UNAVAILABLE', 'a data route fails with the envelope')
    const loginDown = await login()
    t.equal(loginDown.status, 503, 'a login needs the database: 503')
    t.equal(loginDown.body.error?.code, 'SERVICE_UNAVAILABLE')
    t.match(loginDown.body.error?.id, /\S/, 'with the request id')
    for (const server of instances) {
      const res = await profile(server, kept.access_token)
      t.equal(res.status, 503, `${server.label}: an authenticated read of the database is 503, not 500`)
      t.equal(res.body.error?.code, 'SERVICE_UNAVAILABLE')
    }
    t.equal((await viaCaddy('/health')).status, 200, 'liveness still answers: the processes are up')
    stillTheSameProcesses(t)

    await proxy.start()
    t.equal((await until200('/health/ready')).status, 200, 'ready again by itself once PostgreSQL is back')
    for (const server of instances) {
      t.equal((await clients.call(`${server.url}/health/ready`)).status, 200, `${server.label} is ready`)
      t.equal((await profile(server, kept.access_token)).status, 200, `${server.label} serves data again`)
    }
    t.equal((await login()).status, 200, 'logins work again')
    stillTheSameProcesses(t)
  })

  await t.test('SR-41: Redis down: security checks fail closed, nothing crashes, recovery after a restart that lost every key', async (t) => {
    await redis.stop()

    const ready = await viaCaddy('/health/ready')
    t.equal(ready.status, 503, '/health/ready is 503')
    t.equal(ready.body.error?.details?.cache?.status, 'down', 'naming the cache')

    for (const server of instances) {
      const res = await profile(server, revoked.access_token)
      t.not(res.status, 200, `${server.label}: a revoked token is never accepted while the cache is down (fails closed)`)
      t.ok([401, 503].includes(res.status), `${server.label}: 401 or 503 (got ${res.status})`)
      const live = await profile(server, kept.access_token)
      t.ok([200, 503].includes(live.status), `${server.label}: a valid session is checked against PostgreSQL or refused with 503 (got ${live.status})`)
    }
    const loginDown = await login()
    t.equal(loginDown.status, 503, 'a login (its lockout and per-identifier counters live in Redis) fails closed')
    t.equal(loginDown.body.error?.code, 'SERVICE_UNAVAILABLE')
    t.equal((await viaCaddy('/health')).status, 200, 'the processes answer')
    stillTheSameProcesses(t)

    await redis.start()
    t.equal((await until200('/health/ready')).status, 200, 'ready again by itself once Redis is back')
    // Caddy answered with one instance's readiness; each reconnects on its own schedule.
    for (const server of instances) t.equal((await untilReady(server)).status, 200, `${server.label} is ready again`)
    t.equal((await login()).status, 200, 'logins work again')
    for (const server of instances) {
      const res = await profile(server, revoked.access_token)
      t.equal(res.status, 401, `${server.label}: SR-20: the revoked token stays revoked after the cache lost all its data`)
      t.equal((await profile(server, kept.access_token)).status, 200, `${server.label}: the live session works`)
    }
    stillTheSameProcesses(t)
  })
})
