import type { FastifyBaseLogger } from 'fastify'
import type { Bindings, ChildLoggerOptions } from 'pino'

type LogFn = (...args: unknown[]) => void
type Levels = Record<string, number>

/**
 * A request's logger, made on first use: Fastify makes one pino child per request
 * (with the request id, and its redaction set-up), while at the default level
 * most requests never log anything ("incoming request" and
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
