import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { randomUUID } from 'node:crypto'
import net from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Server } from 'node:http'
import Fastify, { LogController, type FastifyBaseLogger, type FastifyHttpOptions, type FastifyInstance, type FastifyPluginAsync, type FastifyRequest, type FastifyServerOptions } from 'fastify'
import fp from 'fastify-plugin'
import type { Bindings, ChildLoggerOptions } from 'pino'
import autoload from '@fastify/autoload'
import { SerializerSelector, type SerializerFactory } from '@fastify/fast-json-stringify-compiler'
import ValidatorSelector, { type ValidatorFactory } from '@fastify/ajv-compiler'
import type { PGlite } from '@electric-sql/pglite'
import { apiPrefix, type AppConfig } from './config.ts'
import { checkInput } from './schemas/boundary.ts'
import { clientErrorHandler, frameworkErrors } from './plugins/app/http/errors.ts'
import { redactUrl } from './plugins/app/http/redact.ts'
import { AppError } from './schemas/errors.ts'
import { prettyTransport } from './startup.ts'

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
    /** Shutdown state: `draining` from the first moment of drain() (readiness answers 503). */
    lifecycle: { draining: boolean }
  }
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{8,128}$/

/** The redaction list: nothing secret reaches the logs (SR-15, SR-33). */
export const redactPaths = [
  'req.headers.authorization', 'req.headers.cookie', 'req.headers["x-session-token"]',
  'res.headers["set-cookie"]', '*.password', '*.current_password', '*.new_password', '*.otp',
  '*.access_token', '*.refresh_token', '*.session_token', '*.token'
]

/**
 * Fastify's request serializer with the URL's secret query values hidden
 * (`?access_token=`, download signatures): pino's path redaction cannot
 * reach inside a string.
 */
export const logSerializers = {
  req: (req: FastifyRequest) => ({
    method: req.method,
    url: redactUrl(req.url),
    version: req.headers?.['accept-version'] as string | undefined,
    host: req.host,
    remoteAddress: req.ip,
    remotePort: req.socket?.remotePort
  })
}

export function serverOptions (config: AppConfig): FastifyHttpOptions<Server> {
  return {
    logger: {
      level: config.LOG_LEVEL,
      redact: { paths: redactPaths, censor: '[redacted]' },
      serializers: logSerializers,
      ...prettyTransport(config)
    },
    // Production logs one line per request (plugins/app/http/request-log.ts) instead of two.
    logController: new LogController({ disableRequestLogging: config.NODE_ENV === 'production' }),
    childLoggerFactory: lazyChildLogger,
    trustProxy: parseTrustProxy(config.TRUST_PROXY) as FastifyServerOptions['trustProxy'],
    bodyLimit: config.BODY_LIMIT_BYTES,
    // Slow clients (slowloris): a request whose headers, or headers and body, take
    // longer than these gets 408 and its connection is closed. Node checks every
    // open connection once per connectionsCheckingInterval (default 30 s), so the
    // check runs each second to keep the limits close to what is configured.
    // requestTimeout is set twice: Fastify assigns its own option after creating
    // the server, and Node validates headersTimeout against it at creation.
    requestTimeout: config.REQUEST_TIMEOUT_MS,
    http: { requestTimeout: config.REQUEST_TIMEOUT_MS, headersTimeout: config.HEADERS_TIMEOUT_MS, connectionsCheckingInterval: 1000 },
    genReqId: (req) => {
      const incoming = req.headers['x-request-id']
      return typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : randomUUID()
    },
    schemaController: { compilersFactory: { buildSerializer: lazySerializers(SerializerSelector()), buildValidator: boundaryValidators(lazyValidators(ValidatorSelector())) } },
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', useDefaults: true, allErrors: true } },
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 200 },
    // The router's and Node's own refusals answer in the envelope with the security headers too.
    frameworkErrors,
    clientErrorHandler,
    forceCloseConnections: 'idle',
    keepAliveTimeout: config.KEEP_ALIVE_TIMEOUT_MS,
    // While closing, a request arriving on a still-open keep-alive connection
    // is served (with Connection: close) instead of refused with a bare 503:
    // behind a load balancer that 503 would be a failed client request during
    // every graceful restart (SR-42). New connections are refused meanwhile.
    return503OnClosing: false,
    // A first embedded start runs PGlite's initdb and every migration inside the
    // app plugin: about 11 CPU seconds, over 60 s of wall time on a loaded
    // machine, where the start then failed (AVV_ERR_PLUGIN_EXEC_TIMEOUT).
    pluginTimeout: config.DATABASE_URL ? 60_000 : 300_000
  }
}

/**
 * Response serializers compiled on first use instead of at start-up: Fastify
 * otherwise compiles one per route and status code (about 150 routes x their
 * error statuses), which cost seconds of start-up and tens of MB of idle RSS
 * for code most instances never run. The first response of a kind pays a
 * few milliseconds once; test/foundation/compilers.test.ts compiles them all
 * eagerly, so a schema that cannot compile still fails the suite.
 */
export function lazySerializers (build: SerializerFactory): SerializerFactory {
  return (externalSchemas, options) => {
    const compile = build(externalSchemas, options)
    return (route) => {
      let serialize: ((doc: unknown) => string) | undefined
      return (doc) => (serialize ??= compile(route))(doc)
    }
  }
}

/**
 * Request validators, likewise compiled on the first request that needs them.
 * Fastify reads `.errors` from the function it was given after a failed call,
 * so the wrapper mirrors the compiled function's errors.
 */
export function lazyValidators (build: ValidatorFactory): ValidatorFactory {
  return (externalSchemas, options) => {
    const compile = build(externalSchemas, options)
    return (route) => {
      let validate: ReturnType<ReturnType<ValidatorFactory>> | undefined
      const lazy = ((data: unknown) => {
        validate ??= compile(route)
        const valid = validate(data)
        lazy.errors = validate.errors
        return valid
      }) as ReturnType<ReturnType<ValidatorFactory>>
      return lazy
    }
  }
}

/**
 * The input boundary of the whole API (schemas/boundary.ts): every body,
 * querystring and params validator first refuses NUL, lone surrogates and
 * over-deep nesting, then runs the route's schema. Headers are left to Node's
 * parser, which refuses such bytes itself.
 */
export function boundaryValidators (build: ValidatorFactory): ValidatorFactory {
  return (externalSchemas, options) => {
    const compile = build(externalSchemas, options)
    return (route) => {
      const validate = compile(route)
      if (route.httpPart === 'headers') return validate
      const checked = ((data: unknown) => {
        const problem = checkInput(data)
        if (problem) {
          checked.errors = [problem]
          return false
        }
        const valid = validate(data)
        checked.errors = validate.errors
        return valid
      }) as ReturnType<ReturnType<ValidatorFactory>>
      return checked
    }
  }
}

type LogFn = (...args: unknown[]) => void
type Levels = Record<string, number>

/**
 * A request's logger, made on first use: Fastify makes one pino child per request
 * (with the request id), which costs a few microseconds and redaction set-up, while
 * at the default level most requests never log anything ("incoming request" and
 * "request completed" are info). A call at a disabled level returns at once; the
 * first enabled call makes the real child, with the same bindings and options.
 * One small object per request: the methods live on the prototype.
 */
class LazyLogger {
  #child: FastifyBaseLogger | undefined
  readonly #threshold: number
  constructor (readonly parent: FastifyBaseLogger, readonly bindings: Bindings, readonly options: ChildLoggerOptions, readonly levels: Levels) {
    this.#threshold = levels[options.level ?? parent.level] ?? 0
  }

  #real () { return (this.#child ??= this.parent.child(this.bindings, this.options)) }
  #log (method: string, args: unknown[]) {
    if (this.#child) (this.#child[method as 'info'] as LogFn)(...args)
    else if ((this.levels[method] ?? 0) >= this.#threshold) (this.#real()[method as 'info'] as LogFn)(...args)
  }

  get level () { return this.#child?.level ?? this.options.level ?? this.parent.level }
  set level (level: string) { this.#real().level = level }
  isLevelEnabled (level: string) {
    return this.#child ? (this.#child as unknown as { isLevelEnabled: (l: string) => boolean }).isLevelEnabled(level) : (this.levels[level] ?? Infinity) >= this.#threshold
  }

  child (bindings: Bindings, options?: ChildLoggerOptions) { return this.#real().child(bindings, options) }
  silent () {}
  fatal (...args: unknown[]) { this.#log('fatal', args) }
  error (...args: unknown[]) { this.#log('error', args) }
  warn (...args: unknown[]) { this.#log('warn', args) }
  info (...args: unknown[]) { this.#log('info', args) }
  debug (...args: unknown[]) { this.#log('debug', args) }
  trace (...args: unknown[]) { this.#log('trace', args) }
}

export function lazyChildLogger (logger: FastifyBaseLogger, bindings: Bindings, options: ChildLoggerOptions): FastifyBaseLogger {
  const levels = (logger as FastifyBaseLogger & { levels: { values: Levels } }).levels.values
  return new LazyLogger(logger, bindings, options, levels) as unknown as FastifyBaseLogger
}

/** TRUST_PROXY: '' = trust nobody; a number = hop count; otherwise IPs/CIDRs. */
export function parseTrustProxy (value: string): boolean | number | string[] {
  const trimmed = value.trim()
  if (trimmed === '') return false
  if (/^\d+$/.test(trimmed)) return Number(trimmed)
  return trimmed.split(',').map((s) => s.trim()).filter(Boolean)
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
 * JSON bodies, Fastify's parser with two answers of its own:
 * - an empty body (`Content-Type: application/json` and nothing else, as fetch
 *   and axios send on a bodiless POST) is no body: the route's schema decides,
 *   as it does for a request without Content-Type;
 * - a `__proto__` key, or `constructor.prototype` (valid JSON, refused against
 *   prototype poisoning), is a 400 VALIDATION_ERROR naming the key, not "not
 *   valid JSON".
 */
function jsonBodies (fastify: FastifyInstance) {
  const parse = fastify.getDefaultJsonParser('error', 'error')
  fastify.removeContentTypeParser('application/json')
  fastify.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    if (body.length === 0) return done(null, undefined)
    parse(request, body as string, (error, value) => {
      const key = error ? forbiddenKey(body as string) : undefined
      if (key === undefined) return done(error, value)
      done(new AppError('VALIDATION_ERROR', { details: [{ field: 'body', message: request.t('validation.forbiddenKey', { key }), forbidden_key: key }] }), undefined)
    })
  })
}

/**
 * Why JSON the parser refused is refused: the poisoning key it holds, or
 * undefined when it is not JSON at all. Runs only on refused bodies.
 */
function forbiddenKey (body: string): string | undefined {
  let found: string | undefined
  try {
    // JSON.parse defines a "__proto__" key as an own property: it does not poison.
    JSON.parse(body, (name, value: unknown) => {
      if (name === '__proto__') found ??= '__proto__'
      else if (name === 'constructor' && value !== null && typeof value === 'object' && 'prototype' in value) found ??= 'constructor.prototype'
      return value
    })
  } catch {
    return undefined
  }
  return found
}

/**
 * Graceful close (SR-42): Node's server.close() closes only the keep-alive
 * connections idle at that moment; one busy with a request stays open after
 * its response until the client or the keep-alive timeout closes it,
 * holding the shutdown past its grace period. So responses sent while
 * draining or closing say `Connection: close`, and a sweep closes connections
 * that fall idle (a response already on its way when closing began) until the
 * server is down.
 */
function drainOnClose (fastify: FastifyInstance) {
  let closing = false
  let sweep: NodeJS.Timeout | undefined
  fastify.addHook('preClose', (done) => {
    closing = true
    sweep = setInterval(() => fastify.server.closeIdleConnections(), 200).unref()
    done()
  })
  fastify.addHook('onSend', (_request, reply, payload, done) => {
    if (closing || fastify.lifecycle.draining) reply.header('connection', 'close')
    done(null, payload)
  })
  fastify.addHook('onClose', (_instance, done) => {
    clearInterval(sweep)
    done()
  })
}

/**
 * Lame-duck drain, the first step of a graceful shutdown (SR-42), before
 * close(). A connection idle to Node may carry a request the client has just
 * written; closing it then resets that request (ECONNRESET, and a POST behind
 * a proxy is not retried). So the server stops listening (new connections go
 * to the other instances: the PM2 cluster's other workers, or Caddy's retry
 * of a refused dial), answers every request still arriving on an open
 * connection with `Connection: close` (each active client learns on its next
 * response and reconnects elsewhere) and readiness answers 503, for up to
 * `windowMs`. Resolves when no connection is left or the window is over;
 * close() then closes the connections that stayed silent throughout.
 */
export async function drain (fastify: FastifyInstance, windowMs: number): Promise<void> {
  fastify.lifecycle.draining = true
  const server = fastify.server
  // net.Server's close only stops listening; http.Server's would also close
  // every idle keep-alive connection at once, the reset this drain avoids.
  if (server.listening) net.Server.prototype.close.call(server)
  const deadline = Date.now() + windowMs
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
