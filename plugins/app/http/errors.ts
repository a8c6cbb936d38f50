import { randomUUID } from 'node:crypto'
import { STATUS_CODES, type IncomingHttpHeaders } from 'node:http'
import type { Duplex } from 'node:stream'
import fp from 'fastify-plugin'
import type { FastifyBaseLogger, FastifyError, FastifyInstance, FastifyReply } from 'fastify'
import findMyWay from 'find-my-way'
import { AppError, errorCodes, type ErrorCode } from '../../../schemas/errors.ts'
import { catalogs, defaultLanguage, type Language } from '../../../i18n/index.ts'
import { negotiateLanguage, translate } from './i18n.ts'
import { pgError } from '../../../db/errors.ts'
import { securityHeaders } from '../../external/helmet.ts'
import type { ReportedRequest } from '../../external/sentry.ts'

/**
 * One place turns every failure into the error envelope of API.md:
 * `{ success: false, error: { id, code, message, details?, timestamp } }`.
 */
declare module 'fastify' {
  interface FastifyInstance {
    /** Reports an unexpected error (Sentry when configured). Set by plugins/external/sentry.ts. */
    reportError: (error: unknown, request?: ReportedRequest) => void
  }
}

const HTTP_METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'] as const

/** Errors meaning "a dependency is down": the client should retry, the process stays up (SR-40, SR-41). */
export function isDependencyDown (error: unknown): boolean {
  const e = error as { code?: string, name?: string, message?: string, errno?: string } | null
  if (!e || typeof e !== 'object') return false
  const code = String(e.code ?? e.errno ?? '')
  if (['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTCONN', 'EHOSTUNREACH', 'CONNECTION_CLOSED', 'CONNECTION_ENDED', 'CONNECTION_DESTROYED', 'CONNECT_TIMEOUT', 'NOT_READY'].includes(code)) return true
  // PostgreSQL classes 08 (connection), 53 (resources), 57P (operator intervention: shutdown)
  if (/^(08|53|57P)/.test(pgError(e)?.code ?? '')) return true
  if (e.name === 'MaxRetriesPerRequestError') return true
  const message = String(e.message ?? '')
  if (/Connection is closed|enableOfflineQueue|Stream isn't writeable|connect ECONNREFUSED|PGlite is closed|Command timed out/i.test(message)) return true
  const cause = (error as { cause?: unknown }).cause
  return cause !== undefined && cause !== error ? isDependencyDown(cause) : false
}

interface AjvError { keyword: string, instancePath?: string, schemaPath?: string, params?: Record<string, unknown>, message?: string }

const listed = (values: unknown[]) => values.map((v) => (typeof v === 'string' ? v : JSON.stringify(v))).join(', ')

/**
 * Ajv's errors as `details`, one entry per problem, each message from the
 * catalog key `validation.<keyword>` in the caller's language (Ajv's English
 * one for a keyword without a key). A TypeBox union of literals is an `anyOf`
 * of `const`: Ajv reports "must be equal to constant" per member and then
 * "must match a schema in anyOf"; those collapse into one "must be one of: …"
 * entry with the `allowed` values. `required` and `additionalProperties` name
 * the field itself rather than the object holding it.
 */
export function validationDetails (errors: AjvError[], context: string, lang: Language = defaultLanguage) {
  const absorbed = new Set<AjvError>()
  const unions = new Map<AjvError, unknown[]>()
  for (const error of errors) {
    if (error.keyword !== 'anyOf' || error.schemaPath === undefined) continue
    const branches = errors.filter((b) => b !== error && b.instancePath === error.instancePath && b.schemaPath?.startsWith(`${error.schemaPath}/`))
    if (branches.length > 0 && branches.every((b) => b.keyword === 'const')) {
      for (const b of branches) absorbed.add(b)
      unions.set(error, branches.map((b) => b.params?.allowedValue))
    }
  }
  return errors.filter((error) => !absorbed.has(error)).map((error) => {
    const params = error.params ?? {}
    let field = `${context}${error.instancePath ?? ''}`.replace(/\/$/, '')
    let keyword = error.keyword
    let allowed: unknown[] | undefined
    const values: Record<string, string | number> = {}
    for (const [name, value] of Object.entries(params)) values[name] = typeof value === 'string' || typeof value === 'number' ? value : JSON.stringify(value)
    if (unions.has(error)) {
      keyword = 'enum'
      allowed = unions.get(error)
    } else if (keyword === 'enum') allowed = params.allowedValues as unknown[]
    else if (keyword === 'const') allowed = [params.allowedValue]
    if (allowed) values.allowed = listed(allowed)
    if (keyword === 'required') field = `${field}/${String(params.missingProperty)}`
    if (keyword === 'additionalProperties') field = `${field}/${String(params.additionalProperty)}`
    const key = `validation.${keyword}`
    return {
      field,
      message: key in catalogs.en ? translate(lang, key, values) : error.message,
      ...(keyword === 'additionalProperties' ? { unknown_field: params.additionalProperty } : {}),
      ...(allowed ? { allowed } : {})
    }
  })
}

/** Maps any thrown value to an AppError with a stable code; validation details are in `lang`. */
export function toAppError (error: unknown, lang: Language = defaultLanguage): AppError {
  if (error instanceof AppError) return error
  const e = error as FastifyError & { validation?: unknown[], type?: string }
  if (e?.validation) {
    return new AppError('VALIDATION_ERROR', { details: validationDetails(e.validation as AjvError[], e.validationContext ?? 'body', lang) })
  }
  switch (e?.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
    case 'FST_REQ_FILE_TOO_LARGE':
      return new AppError('PAYLOAD_TOO_LARGE', { cause: error })
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_INVALID_MULTIPART_CONTENT_TYPE':
      return new AppError('UNSUPPORTED_MEDIA_TYPE', { cause: error })
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new AppError('MALFORMED_JSON', { cause: error })
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
    case 'FST_ERR_CTP_INVALID_TYPE':
    case 'FST_ERR_CTP_EMPTY_TYPE':
      return new AppError('BAD_REQUEST', { cause: error })
  }
  if (e instanceof SyntaxError && e.statusCode === 400) return new AppError('MALFORMED_JSON', { cause: error })
  if (isDependencyDown(error)) return new AppError('SERVICE_UNAVAILABLE', { cause: error })
  const status = typeof e?.statusCode === 'number' ? e.statusCode : 500
  if (status === 429) return new AppError('RATE_LIMITED', { cause: error })
  if (status === 413) return new AppError('PAYLOAD_TOO_LARGE', { cause: error })
  if (status === 415) return new AppError('UNSUPPORTED_MEDIA_TYPE', { cause: error })
  if (status === 404) return new AppError('NOT_FOUND', { cause: error })
  if (status === 503) return new AppError('SERVICE_UNAVAILABLE', { cause: error })
  if (status >= 400 && status < 500) return new AppError('BAD_REQUEST', { cause: error, status })
  return new AppError('INTERNAL_ERROR', { cause: error })
}

/** The envelope's body for `error` (API.md). */
function errorBody (error: AppError, id: string, message: string, debug = false) {
  return {
    success: false as const,
    error: {
      id,
      code: error.code,
      message,
      ...(error.details !== undefined ? { details: error.details } : {}),
      ...(debug && error.statusCode >= 500 && error.cause instanceof Error ? { details: { stack: error.cause.stack } } : {}),
      timestamp: new Date().toISOString()
    }
  }
}

/** What the hooks add to every answer (SR-31), for the answers made outside them. */
const outsideHooksHeaders = { ...securityHeaders(), 'cache-control': 'no-store' }

/** What `frameworkErrors` reads of the request (a FastifyRequest fits). */
interface RefusedRequest { id: unknown, log: FastifyBaseLogger, headers: IncomingHttpHeaders, protocol: string }

/**
 * Fastify's `frameworkErrors`: the router's own failures (a URL that is not
 * valid percent-encoded UTF-8, a path parameter longer than `maxParamLength`),
 * answered before any hook or decorator runs, so the envelope, the request id
 * and the security headers are all set here.
 */
export function frameworkErrors (raw: FastifyError, request: RefusedRequest, reply: FastifyReply) {
  const error = raw.code === 'FST_ERR_MAX_PARAM_LENGTH'
    ? new AppError('VALIDATION_ERROR', { details: [{ field: 'params', message: 'is longer than any path parameter of the API' }] })
    : raw.code === 'FST_ERR_BAD_URL'
      ? new AppError('BAD_REQUEST', { details: { reason: 'The URL is not valid percent-encoded UTF-8' } })
      : toAppError(raw)
  if (error.statusCode >= 500) request.log.error({ err: raw }, 'framework error')
  const lang = negotiateLanguage(request.headers['accept-language']) ?? defaultLanguage
  if (request.protocol === 'https') reply.header('strict-transport-security', 'max-age=31536000; includeSubDomains')
  return reply.headers(outsideHooksHeaders).header('x-request-id', request.id).header('content-language', lang)
    .code(error.statusCode).type('application/json; charset=utf-8')
    .send(errorBody(error, String(request.id), translate(lang, `errors.${error.code}`, error.params)))
}

/**
 * Fastify's `clientErrorHandler`: what Node's HTTP parser refuses before there
 * is a request (headers over the size limit: 431; a malformed request line or
 * header: 400; a request timeout: 408) is answered on the socket with the
 * envelope and the security headers, then the connection is closed.
 */
export function clientErrorHandler (this: FastifyInstance, error: NodeJS.ErrnoException, socket: Duplex) {
  if (error.code === 'ECONNRESET' || socket.destroyed) return
  const status = error.code === 'HPE_HEADER_OVERFLOW' ? 431 : error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400
  const reason = status === 431 ? 'The request headers are larger than the limit' : status === 408 ? 'The request was not received in time' : 'The request is not valid HTTP'
  const appError = status === 408 ? new AppError('REQUEST_TIMEOUT', { details: { reason } }) : new AppError('BAD_REQUEST', { status, details: { reason } })
  this.log.debug({ err: error }, 'client error')
  if (!socket.writable) {
    socket.destroy()
    return
  }
  const id = randomUUID()
  const body = JSON.stringify(errorBody(appError, id, translate(defaultLanguage, `errors.${appError.code}`)))
  const headers: Record<string, string | number> = {
    ...outsideHooksHeaders,
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'content-language': defaultLanguage,
    'x-request-id': id,
    connection: 'close'
  }
  const head = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join('')
  socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n${head}\r\n${body}`)
}

export default fp(async (fastify) => {
  // A router of every path, any method: tells a 404 (no such path) from a 405 (path exists, other method).
  const paths = findMyWay()
  const allowed = new Map<string, Set<string>>()
  fastify.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method]
    let set = allowed.get(route.url)
    if (!set) {
      set = new Set()
      allowed.set(route.url, set)
      paths.on('GET', route.url, () => {}, { url: route.url })
    }
    for (const m of methods) set.add(m)
  })

  const debug = fastify.config.DEBUG_MODE && fastify.config.NODE_ENV !== 'production'

  function send (error: AppError, request: { id: unknown, t: (key: string, params?: Record<string, string | number>) => string }, reply: FastifyReply) {
    if (error.retryAfter !== undefined) reply.header('Retry-After', String(Math.max(1, Math.ceil(error.retryAfter))))
    const body = errorBody(error, String(request.id), request.t(`errors.${error.code}`, error.params), debug)
    return reply.code(error.statusCode).type('application/json; charset=utf-8').send(body)
  }

  fastify.setErrorHandler((raw, request, reply) => {
    const error = toAppError(raw, request.lang)
    if (error.statusCode >= 500) {
      if (error.code === 'SERVICE_UNAVAILABLE') request.log.warn({ err: raw }, 'dependency unavailable')
      else {
        request.log.error({ err: raw }, 'unexpected error')
        fastify.reportError(raw, request)
      }
    }
    return send(error, request, reply)
  })

  fastify.setNotFoundHandler((request, reply) => {
    const match = paths.find('GET', (request.raw.url ?? '/').split('?')[0])
    if (match) {
      const url = (match.store as { url: string }).url
      const methods = [...(allowed.get(url) ?? [])].filter((m) => (HTTP_METHODS as readonly string[]).includes(m))
      reply.header('Allow', methods.join(', '))
      return send(new AppError('METHOD_NOT_ALLOWED', { details: { allowed: methods } }), request, reply)
    }
    return send(new AppError('NOT_FOUND'), request, reply)
  })
}, { name: 'errors', dependencies: ['i18n'] })

export { errorCodes, type ErrorCode }
