import { randomUUID } from 'node:crypto'
import type { Server } from 'node:http'
import { LogController, type FastifyHttpOptions, type FastifyServerOptions } from 'fastify'
import type { AppConfig } from '../../../config.ts'
import { prettyTransport } from '../../../startup.ts'
import { clientErrorHandler, frameworkErrors } from './errors.ts'
import { REDACTED, redactPaths, redactUrl } from './redact.ts'
import { lazyChildLogger } from './lazy-logger.ts'
import { schemaCompilers } from './compilers.ts'

/** The Fastify server options the config gives (app.ts buildApp). Not a plugin. */

const REQUEST_ID = /^[A-Za-z0-9._:-]{8,128}$/

/** What the request serializer reads (a FastifyRequest fits). */
interface LoggedRequest {
  method: string
  url: string
  headers?: Record<string, string | string[] | undefined>
  host: string
  ip: string
  socket?: { remotePort?: number }
}

/**
 * Fastify's request serializer with the URL's secret query values hidden
 * (`?access_token=`, download signatures): pino's path redaction cannot
 * reach inside a string.
 */
export const logSerializers = {
  req: (req: LoggedRequest) => ({
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
      redact: { paths: redactPaths, censor: REDACTED },
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
    schemaController: { compilersFactory: schemaCompilers() },
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
    // app plugin: over 60 s of wall time on a loaded machine, where the start then
    // failed (AVV_ERR_PLUGIN_EXEC_TIMEOUT).
    pluginTimeout: config.DATABASE_URL ? 60_000 : 300_000
  }
}

/** TRUST_PROXY: '' = trust nobody; a number = hop count; otherwise IPs/CIDRs. */
export function parseTrustProxy (value: string): boolean | number | string[] {
  const trimmed = value.trim()
  if (trimmed === '') return false
  if (/^\d+$/.test(trimmed)) return Number(trimmed)
  return trimmed.split(',').map((s) => s.trim()).filter(Boolean)
}
