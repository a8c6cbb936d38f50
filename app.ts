import path from 'node:path'
import { fileURLToPath } from 'node:url'
import net from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import Fastify, { type FastifyInstance, type FastifyPluginAsync, type FastifyServerOptions } from 'fastify'
import fp from 'fastify-plugin'
import autoload from '@fastify/autoload'
import type { PGlite } from '@electric-sql/pglite'
import { apiPrefix, type AppConfig } from './config.ts'
import { jsonBodies } from './plugins/app/http/json-bodies.ts'
import { serverOptions } from './plugins/app/http/server-options.ts'

const here = path.dirname(fileURLToPath(import.meta.url))
// Autoload must know it may import .ts files when we run from source (tsx, tap).
if (import.meta.url.endsWith('.ts')) process.env.FASTIFY_AUTOLOAD_TYPESCRIPT ??= '1'

/** Things a caller may inject instead of letting the app create them (tests, CLIs). */
export interface AppDeps {
  /** An already-open PGlite instance (tests clone one from a template). */
  pglite?: PGlite
  /** A clock for time-dependent logic (OTP expiry, cooldowns); defaults to Date.now. */
  now?: () => number
  /** Extra plugins registered after the routes (tests add probe routes with it). */
  plugins?: FastifyPluginAsync[]
  /** Fastify options over the ones the config gives (tests swap the schema compilers). */
  serverOptions?: Partial<FastifyServerOptions>
}

export interface AppOptions { config: AppConfig, deps?: AppDeps }

declare module 'fastify' {
  interface FastifyInstance {
    config: AppConfig
    deps: AppDeps
    now: () => number
    /** Shutdown state: `draining` from the first moment of drain() (the probes answer 503), `closingConnections` once it stops listening (responses say Connection: close). */
    lifecycle: { draining: boolean, closingConnections?: boolean }
  }
}

/** The application as a plugin: configuration, then plugins (external, then ours), then routes. */
const app: FastifyPluginAsync<AppOptions> = async (fastify, opts) => {
  fastify.decorate('config', opts.config)
  fastify.decorate('deps', opts.deps ?? {})
  fastify.decorate('now', opts.deps?.now ?? Date.now)
  fastify.decorate('lifecycle', { draining: false })
  drainOnClose(fastify)
  jsonBodies(fastify)

  // indexPattern matches nothing: by default an index.ts makes autoload skip every
  // sibling file, and route folders hold several files (health/index.ts + storage.ts).
  const autoloadOpts = { forceESM: true, encapsulate: true, indexPattern: /^$/, ignorePattern: /(^|[/\\])(_|.*\.d\.ts$|.*\.test\.)/ }
  await fastify.register(autoload, { ...autoloadOpts, dir: path.join(here, 'plugins/external') })
  await fastify.register(autoload, { ...autoloadOpts, dir: path.join(here, 'plugins/app') })
  await fastify.register(autoload, { ...autoloadOpts, dir: path.join(here, 'routes/root') })
  await fastify.register(autoload, { ...autoloadOpts, dir: path.join(here, 'routes/api'), options: { prefix: apiPrefix(opts.config) } })
  for (const plugin of opts.deps?.plugins ?? []) await fastify.register(plugin)
}

// fp: the error and not-found handlers set inside apply to the root instance.
export default fp(app, { name: 'app' })

/**
 * Graceful close (SR-42): Node's server.close() closes only the keep-alive
 * connections idle at that moment; one busy with a request stays open after
 * its response until the client or the keep-alive timeout closes it,
 * holding the shutdown past its grace period. So responses sent while
 * draining or closing say `Connection: close`, and a sweep closes connections
 * that fall idle (a response already on its way when closing began) until the
 * server is down.
 *
 * A connection that was accepted but has not sent a whole request yet is not
 * idle to Node (its headers timeout runs from the connect), so neither
 * closeIdleConnections() nor close() ends it, and http.Server.close() also
 * stops the timer that would: one such socket (a preconnecting proxy or
 * browser) held the process open until close-with-grace exited 1. Those are
 * tracked here and closed when closing begins, which is the end of the drain
 * window: they stayed silent throughout it.
 */
function drainOnClose (fastify: FastifyInstance) {
  let closing = false
  let sweep: NodeJS.Timeout | undefined
  const unused = new Set<net.Socket>()
  fastify.server.on('connection', (socket: net.Socket) => {
    unused.add(socket)
    socket.once('close', () => unused.delete(socket))
  })
  fastify.server.on('request', (request: { socket: net.Socket }) => { unused.delete(request.socket) })
  fastify.addHook('preClose', (done) => {
    closing = true
    for (const socket of unused) socket.destroy()
    unused.clear()
    sweep = setInterval(() => fastify.server.closeIdleConnections(), 200).unref()
    done()
  })
  fastify.addHook('onSend', (_request, reply, payload, done) => {
    if (closing || fastify.lifecycle.closingConnections) reply.header('connection', 'close')
    done(null, payload)
  })
  fastify.addHook('onClose', (_instance, done) => {
    clearInterval(sweep)
    done()
  })
}

/**
 * Lame-duck drain, the first step of a graceful shutdown (SR-42), before
 * close(), in two halves of `windowMs`.
 *
 * First half: the probes (/health, /health/ready) answer 503 while the
 * server keeps listening and answering as usual, so a load balancer's active
 * health check takes the instance out of rotation before any connection to
 * it is refused. Caddy does not survive a refused dial for a POST: Go's
 * transport closes the body with the failed attempt, the retry on the other
 * instance fails and counts against that instance, and with both out Caddy
 * 2.6 answers every POST 503 at once (docs/performance.md). Caddy's HEALTH_INTERVAL
 * must be well below this half (Caddyfile: 1 s against 2.5 s).
 *
 * Second half: the server stops listening (new connections go to the other
 * instances: the PM2 cluster's other workers, or Caddy's retry of a refused
 * dial) and answers every request still arriving on an open connection with
 * `Connection: close`, so each active client learns on its next response
 * and reconnects elsewhere. A connection idle to Node may carry a request
 * the client has just written; closing it would reset that request, so none
 * is closed here. Resolves when no connection is left or the window is
 * over; close() then closes the connections that stayed silent throughout.
 */
export async function drain (fastify: FastifyInstance, windowMs: number): Promise<void> {
  fastify.lifecycle.draining = true
  const server = fastify.server
  const deadline = Date.now() + windowMs
  if (server.listening) await sleep(Math.floor(windowMs / 2))
  fastify.lifecycle.closingConnections = true
  // net.Server's close only stops listening; http.Server's would also close
  // every idle keep-alive connection at once, the reset this drain avoids.
  if (server.listening) net.Server.prototype.close.call(server)
  const open = () => new Promise<number>((resolve) => server.getConnections((error, count) => resolve(error ? 0 : count)))
  while (Date.now() < deadline && await open() > 0) await sleep(Math.min(50, Math.max(0, deadline - Date.now())))
}

/** Builds a ready-to-listen instance. */
export async function buildApp (config: AppConfig, deps: AppDeps = {}): Promise<FastifyInstance> {
  const fastify = Fastify({ ...serverOptions(config), ...deps.serverOptions })
  await fastify.register(fp(app, { name: 'app' }), { config, deps })
  try {
    await fastify.ready()
  } catch (error) {
    // Release what the plugins that did start opened (pools, sockets), then fail.
    await fastify.close().catch(() => {})
    throw error
  }
  return fastify
}
