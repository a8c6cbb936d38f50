import t from 'tap'
import { buildContext, stack, testRedisUrl } from '../helpers/build.ts'
import { TcpProxy } from '../helpers/tcp-proxy.ts'

t.test('liveness and readiness', async (t) => {
  const { app } = await buildContext(t)
  const live = await app.inject('/health')
  t.equal(live.statusCode, 200)
  t.equal(live.json().data.status, 'ok')
  const ready = await app.inject('/health/ready')
  t.equal(ready.statusCode, 200)
  t.equal(ready.json().data.database.status, 'up')
  t.equal(ready.json().data.cache.status, 'up')
  const db = await app.inject('/api/v1/health/database')
  t.equal(db.statusCode, 200)
  t.equal(db.json().data.driver, stack === 'embedded' ? 'pglite' : 'postgres')
  t.equal((await app.inject('/api/v1/health')).json().data.mode, 'api/v1')
})

const proxied = (url: string, port: number) => { const u = new URL(url); u.port = String(port); u.hostname = '127.0.0.1'; return u.toString() }

t.test('PostgreSQL down: ready 503, data routes 503, process alive, recovers by itself (SR-40)', { skip: stack === 'embedded' ? 'the embedded database runs in-process and cannot go down separately' : false }, async (t) => {
  const ctx = await buildContext(t)
  const target = new URL(ctx.env.DATABASE_URL)
  const proxy = new TcpProxy(Number(target.port || 5432))
  await proxy.start()
  t.teardown(() => proxy.stop())
  const app = await ctx.another({ DATABASE_URL: proxied(ctx.env.DATABASE_URL, proxy.port) })
  t.equal((await app.inject('/health/ready')).statusCode, 200)

  await proxy.stop()
  const ready = await app.inject('/health/ready')
  t.equal(ready.statusCode, 503)
  t.equal(ready.json().error.code, 'SERVICE_UNAVAILABLE')
  t.equal(ready.json().error.details.database.status, 'down')
  const data = await app.inject('/api/v1/health/database')
  t.equal(data.statusCode, 503)
  t.equal(data.json().error.code, 'SERVICE_UNAVAILABLE')
  t.equal((await app.inject('/health')).statusCode, 200, 'liveness unaffected: the process is up')

  await proxy.start()
  let status = 0
  for (let i = 0; i < 50 && status !== 200; i++) {
    status = (await app.inject('/health/ready')).statusCode
    if (status !== 200) await new Promise((resolve) => setTimeout(resolve, 200))
  }
  t.equal(status, 200, 'ready again without a restart')
})

t.test('Redis down: ready 503, process alive, recovers by itself (SR-41)', { skip: stack === 'embedded' ? 'the embedded store runs in-process and cannot go down separately' : false }, async (t) => {
  const ctx = await buildContext(t)
  const proxy = new TcpProxy(Number(new URL(testRedisUrl).port || 6379))
  await proxy.start()
  t.teardown(() => proxy.stop())
  const app = await ctx.another({ REDIS_URL: `redis://127.0.0.1:${proxy.port}` })
  t.equal((await app.inject('/health/ready')).statusCode, 200)

  await proxy.stop()
  const ready = await app.inject('/health/ready')
  t.equal(ready.statusCode, 503)
  t.equal(ready.json().error.details.cache.status, 'down')
  t.equal((await app.inject('/health')).statusCode, 200, 'the process stays up')
  t.equal((await app.inject('/api/v1/health')).statusCode, 200, 'routes that need no cache keep working (the global limit does not fail the request)')

  await proxy.start()
  let status = 0
  for (let i = 0; i < 50 && status !== 200; i++) {
    status = (await app.inject('/health/ready')).statusCode
    if (status !== 200) await new Promise((resolve) => setTimeout(resolve, 200))
  }
  t.equal(status, 200, 'ready again without a restart')
})
