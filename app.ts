import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { randomUUID } from 'node:crypto'
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyPluginAsync, type FastifyServerOptions } from 'fastify'
import fp from 'fastify-plugin'
import type { Bindings, ChildLoggerOptions } from 'pino'
import autoload from '@fastify/autoload'
import { SerializerSelector, type SerializerFactory } from '@fastify/fast-json-stringify-compiler'
import ValidatorSelector, { type ValidatorFactory } from '@fastify/ajv-compiler'
import type { PGlite } from '@electric-sql/pglite'
import { apiPrefix, type AppConfig } from './config.ts'
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
  }
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{8,128}$/

/** The redaction list: nothing secret reaches the logs (SR-15, SR-33). */
export const redactPaths = [
  'req.headers.authorization', 'req.headers.cookie', 'req.headers["x-session-token"]',
  'res.headers["set-cookie"]', '*.password', '*.current_password', '*.new_password', '*.otp',
  '*.access_token', '*.refresh_token', '*.session_token', '*.token'
]

export function serverOptions (config: AppConfig): FastifyServerOptions {
  return {
    logger: {
      level: config.LOG_LEVEL,
      redact: { paths: redactPaths, censor: '[redacted]' },
      ...prettyTransport(config)
    },
    // Production logs one line per request (plugins/app/request-log.ts) instead of two.
    logController: new LogController({ disableRequestLogging: config.NODE_ENV === 'production' }),
    childLoggerFactory: lazyChildLogger,
    trustProxy: parseTrustProxy(config.TRUST_PROXY) as FastifyServerOptions['trustProxy'],
    bodyLimit: config.BODY_LIMIT_BYTES,
    genReqId: (req) => {
      const incoming = req.headers['x-request-id']
      return typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : randomUUID()
    },
    schemaController: { compilersFactory: { buildSerializer: lazySerializers(SerializerSelector()), buildValidator: lazyValidators(ValidatorSelector()) } },
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', useDefaults: true, allErrors: true } },
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 200 },
    forceCloseConnections: 'idle',
    // While closing, a request arriving on a still-open keep-alive connection
    // is served (with Connection: close) instead of refused with a bare 503:
    // behind a load balancer that 503 would be a failed client request during
    // every graceful restart (SR-42). New connections are refused meanwhile.
    return503OnClosing: false,
    pluginTimeout: 60_000
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
  drainOnClose(fastify)

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
 * its response until the client or the 72 s keep-alive timeout closes it,
 * holding the shutdown past its grace period. So responses sent while closing
 * say `Connection: close`, and a sweep closes connections that fall idle
 * (a response already on its way when closing began) until the server is down.
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
    if (closing) reply.header('connection', 'close')
    done(null, payload)
  })
  fastify.addHook('onClose', (_instance, done) => {
    clearInterval(sweep)
    done()
  })
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
