import fp from 'fastify-plugin'
import type { Breadcrumb, ErrorEvent } from '@sentry/node'
import { REPORT_SECRETS, redactSecrets, redactUrl } from '../app/http/redact.ts'

/** The value as it may leave the process in an error report (SR-33). */
export const scrub = (value: unknown): unknown => redactSecrets(value, REPORT_SECRETS)

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

/** What an error report says about the request that failed (a FastifyRequest fits). */
export interface ReportedRequest { id: unknown, method: string, url: string, routeOptions: { url?: string } }

/** Error reports go to Sentry when SENTRY_DSN is set, with bodies, tokens, passwords and OTPs scrubbed. */
export default fp(async (fastify) => {
  const { SENTRY_DSN, SENTRY_ENVIRONMENT, SENTRY_TRACES_SAMPLE_RATE, NODE_ENV } = fastify.config
  if (!SENTRY_DSN) {
    fastify.decorate('reportError', () => {})
    return
  }
  // Loaded only when configured: the SDK is heavy to start and to keep (docs/performance.md).
  const Sentry = await import('@sentry/node')
  const client = Sentry.init({
    dsn: SENTRY_DSN,
    environment: SENTRY_ENVIRONMENT ?? NODE_ENV,
    tracesSampleRate: SENTRY_TRACES_SAMPLE_RATE,
    defaultIntegrations: false,
    beforeSend: scrubEvent,
    beforeBreadcrumb: scrubBreadcrumb
  })
  fastify.decorate('reportError', (error: unknown, request?: ReportedRequest) => {
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
