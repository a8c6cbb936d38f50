import fp from 'fastify-plugin'
import type { FastifyRequest } from 'fastify'
import type { Breadcrumb, ErrorEvent } from '@sentry/node'
import { redactUrl } from '../app/http/redact.ts'

/** Keys whose values never leave the process in an error report (SR-33). */
const SECRET_KEY = /pass(word)?|secret|token|otp|code|authorization|cookie|session|api[-_]?key|dsn/i

export function scrub (value: unknown, depth = 0): unknown {
  if (depth > 8 || value === null || typeof value !== 'object') return value
  if (Array.isArray(value)) return value.map((v) => scrub(v, depth + 1))
  const out: Record<string, unknown> = {}
  for (const [key, v] of Object.entries(value)) {
    out[key] = SECRET_KEY.test(key) ? '[redacted]' : scrub(v, depth + 1)
  }
  return out
}

/** An event as it may leave the process: no body, cookie or query string, secret headers and query values hidden. */
export function scrubEvent<E extends ErrorEvent> (event: E): E {
  if (event.request) {
    delete event.request.data
    delete event.request.cookies
    delete event.request.query_string
    event.request.url = redactUrl(event.request.url)
    event.request.headers = scrub(event.request.headers ?? {}) as Record<string, string>
  }
  if (event.extra) event.extra = scrub(event.extra) as Record<string, unknown>
  if (event.breadcrumbs) event.breadcrumbs = event.breadcrumbs.map(scrubBreadcrumb)
  return event
}

/** HTTP breadcrumbs (outgoing fetches, URL uploads) carry URLs; their secret query values are hidden. */
export function scrubBreadcrumb (crumb: Breadcrumb): Breadcrumb {
  const data = crumb.data && typeof crumb.data.url === 'string' ? { ...crumb.data, url: redactUrl(crumb.data.url) } : crumb.data
  return { ...crumb, data: data ? scrub(data) as Record<string, unknown> : data, message: crumb.message && redactUrl(crumb.message) }
}

/** Error reports go to Sentry when SENTRY_DSN is set, with bodies, tokens, passwords and OTPs scrubbed. */
export default fp(async (fastify) => {
  const { SENTRY_DSN, SENTRY_ENVIRONMENT, SENTRY_TRACES_SAMPLE_RATE, NODE_ENV } = fastify.config
  if (!SENTRY_DSN) {
    fastify.decorate('reportError', () => {})
    return
  }
  // Loaded only when configured: the SDK costs over a second of start-up and tens of MB of RSS.
  const Sentry = await import('@sentry/node')
  const client = Sentry.init({
    dsn: SENTRY_DSN,
    environment: SENTRY_ENVIRONMENT ?? NODE_ENV,
    tracesSampleRate: SENTRY_TRACES_SAMPLE_RATE,
    defaultIntegrations: false,
    beforeSend: scrubEvent,
    beforeBreadcrumb: scrubBreadcrumb
  })
  fastify.decorate('reportError', (error: unknown, request?: FastifyRequest) => {
    Sentry.withScope((scope) => {
      if (request) {
        scope.setTag('request_id', String(request.id))
        scope.setContext('request', { method: request.method, route: request.routeOptions.url ?? request.url.split('?')[0] })
      }
      Sentry.captureException(error)
    })
  })
  fastify.addHook('onClose', async () => { await client?.close(2000) })
}, { name: 'sentry' })
