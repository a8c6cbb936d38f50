import t from 'tap'
import { and, eq, inArray } from 'drizzle-orm'
import { activityLog } from '../../db/schema/index.ts'
import { createUser, defaultPassword } from '../helpers/users.ts'
import type { ServerProcess } from '../helpers/processes.ts'
import { answeredBy, e2eSkipReason, load, prefix, startCluster } from '../helpers/cluster.ts'

// Several real processes start here; on a busy machine that takes a while. Bounded all the same.
t.setTimeout(420_000)

const LOAD = { total: 300, concurrency: 6 }

t.test('instances leaving and dying under load behind Caddy', { skip: e2eSkipReason() }, async (t) => {
  // Debug level: production logs each request's arrival ('request received') besides its answer ('request').
  const cluster = await startCluster(t, { env: { LOG_LEVEL: 'debug' } })
  const { ctx, a, caddy, clients } = cluster
  let b: ServerProcess = cluster.b
  const user = await createUser(ctx.app)
  const login = await clients.call(`${caddy.url}${prefix}/auth/login-with-password`, { method: 'POST', json: { identifier: user.email, password: defaultPassword } })
  t.equal(login.status, 200, 'logged in through Caddy', { body: login.body })
  const auth = { authorization: `Bearer ${login.body.data.access_token as string}` }

  // Authenticated reads through Caddy (session check in Redis, profile from
  // PostgreSQL), each from one of 50 client addresses so no client reaches
  // the global per-IP limit.
  const profileLoad = (subnet: string, at: (completed: number) => void) => load({
    ...LOAD,
    send: (i) => clients.call(`${caddy.url}${prefix}/settings/profile`, { ip: `${subnet}.${1 + (i % 50)}`, headers: auth }),
    at
  })
  const servedProfiles = (server: ServerProcess) => server.logs.filter((l) => l.msg === 'request received' && l.url === `${prefix}/settings/profile`).length

  await t.test('SR-42: SIGTERM to one instance mid-load: no client request fails, and it exits 0 by itself', async (t) => {
    let signalled = -1
    const results = await profileLoad('127.0.2', (completed) => {
      if (signalled < 0 && completed >= LOAD.total / 4) {
        signalled = completed
        b.signal('SIGTERM')
      }
    })
    t.ok(signalled > 0, `SIGTERM sent after ${signalled} of ${LOAD.total} requests`)
    t.ok(servedProfiles(b) > 0, 'the instance was serving the load when it was signalled')
    t.same(results.filter((r) => r.status !== 200), [], `all ${LOAD.total} requests answered 200`)
    t.same(await b.exited, { code: 0, signal: null }, 'exit code 0: it closed within SHUTDOWN_GRACE_MS (close-with-grace exits 1 past it)')
    t.ok(b.logs.some((l) => l.msg === 'closing' && l.signal === 'SIGTERM'), 'it logged the graceful close')
  })

  await t.test('a restarted instance rejoins the rotation by itself', async (t) => {
    b = await cluster.start('instance-b', b.port)
    let rejoined = false
    for (let i = 0; i < 100 && !rejoined; i++) {
      rejoined = answeredBy(await clients.call(`${caddy.url}${prefix}/health`, { ip: `127.0.4.${1 + (i % 50)}` })) === 'instance-b'
      if (!rejoined) await new Promise((resolve) => setTimeout(resolve, 100))
    }
    t.ok(rejoined, 'Caddy sends traffic to it again after its health check passes')
  })

  await t.test('SIGKILL mid-load: Caddy fails over within its retry window and no request fails', async (t) => {
    let killed = -1
    const before = servedProfiles(b)
    const results = await profileLoad('127.0.3', (completed) => {
      if (killed < 0 && completed >= LOAD.total / 4) {
        killed = completed
        b.signal('SIGKILL')
      }
    })
    t.ok(servedProfiles(b) > before, 'the instance was serving the load when it was killed')
    t.same(await b.exited, { code: null, signal: 'SIGKILL' })
    // A request Caddy cannot place within LB_TRY_DURATION is answered 503: none is.
    t.same(results.filter((r) => r.status !== 200), [], `all ${LOAD.total} requests answered 200, the ones in flight on the killed instance retried on the other`)
    const after = await clients.call(`${caddy.url}${prefix}/health`, { ip: '127.0.4.99' })
    t.equal(answeredBy(after), 'instance-a')
  })

  await t.test('SR-42: SIGTERM lets in-flight requests finish, refuses new connections, commits their audit rows, exits 0', async (t) => {
    // Logins hash with Argon2id on one worker thread: several in a row keep
    // the instance busy long enough for the signal to arrive mid-request.
    const users = await Promise.all(Array.from({ length: 6 }, () => createUser(ctx.app)))
    const ids = users.map((_u, i) => `in-flight-login-${i + 1}`)
    const pending = users.map((u, i) => clients.call(`${a.url}${prefix}/auth/login-with-password`, {
      method: 'POST',
      headers: { 'x-request-id': ids[i] },
      json: { identifier: u.email, password: defaultPassword }
    }))
    // Every login must have reached the instance: a connection whose request was not read
    // yet is idle to Node and is closed at once (a client or Caddy retries it elsewhere).
    for (const id of ids) await a.waitForLog((l) => l.msg === 'request received' && l.reqId === id)
    a.signal('SIGTERM')
    await a.waitForLog((l) => l.msg === 'closing')

    // It keeps listening for the first half of SHUTDOWN_DRAIN_MS (5 s), while its probes answer 503.
    let refused = false
    for (let i = 0; i < 160 && !refused; i++) {
      refused = await fetch(`${a.url}/health`).then(() => false, (error: { cause?: { code?: string } }) => error.cause?.code === 'ECONNREFUSED')
      if (!refused) await new Promise((resolve) => setTimeout(resolve, 50))
    }
    t.ok(refused, 'new connections are refused once it stops listening, half-way through the drain window')

    const replies = await Promise.all(pending)
    t.same(replies.map((r) => r.status), ids.map(() => 200), 'every in-flight login completed')
    t.ok(replies.every((r) => typeof r.body.data?.access_token === 'string'), 'with its tokens')
    const closingAt = a.logs.findIndex((l) => l.msg === 'closing')
    const completedAfter = a.logs.slice(closingAt).filter((l) => l.msg === 'request' && ids.includes(l.reqId!))
    t.ok(completedAfter.length > 0, `${completedAfter.length} of them were still in flight when the signal arrived`)
    t.same(await a.exited, { code: 0, signal: null }, 'exit code 0 within the grace period')

    const rows = await ctx.app.db.select({ request_id: activityLog.request_id }).from(activityLog)
      .where(and(eq(activityLog.action, 'login_success'), inArray(activityLog.request_id, ids)))
    t.same(rows.map((r) => r.request_id).sort(), [...ids].sort(), 'SR-43: each login the client saw succeed has its committed audit row')
  })
})
