import fp from 'fastify-plugin'
import type { FastifyRequest } from 'fastify'
import type { Language } from '../../../i18n/index.ts'
import type { AuthContext } from './authenticate.ts'

/**
 * Who is asking, as services see it: the request reduced to what a service may use.
 * Services take a `Caller`, never the request; routes pass `request.caller`, scripts
 * and background tasks build one with `systemCaller()`.
 */
export interface Caller {
  /** The authenticated identity; null for an anonymous caller (sign-up, login, OTP). */
  readonly actor: AuthContext | null
  readonly sessionId: string | null
  readonly ip: string | null
  readonly userAgent: string | null
  /** The language of the response (and of any message sent on the caller's behalf). */
  readonly lang: Language
  readonly requestId: string | null
  /** The route pattern and method, recorded on audit rows. */
  readonly endpoint: string | null
  readonly method: string | null
  /** Audit rows queued on behalf of this request: completed with its outcome when it ends. */
  auditRows: unknown[] | null
}

declare module 'fastify' {
  interface FastifyRequest {
    /** This request as a `Caller` (made on first use, after authentication). */
    readonly caller: Caller
  }
}

const kCaller = Symbol('caller')
type WithCaller = FastifyRequest & { [kCaller]?: Caller }

function callerOf (request: FastifyRequest): Caller {
  const auth = request.auth ?? null
  return {
    actor: auth,
    sessionId: auth?.sessionId ?? null,
    ip: request.ip,
    userAgent: request.headers['user-agent']?.slice(0, 512) ?? null,
    get lang () { return request.lang },
    requestId: String(request.id),
    endpoint: request.routeOptions.url ?? null,
    method: request.method,
    auditRows: null
  }
}

/** The caller of a request if a service has used it (the activity hook reads its queued rows). */
export function existingCaller (request: FastifyRequest): Caller | undefined {
  return (request as WithCaller)[kCaller]
}

/** A caller outside any request: CLIs, maintenance tasks. */
export function systemCaller (lang: Language = 'en'): Caller {
  return { actor: null, sessionId: null, ip: null, userAgent: null, lang, requestId: null, endpoint: null, method: null, auditRows: null }
}

export default fp(async (fastify) => {
  fastify.decorateRequest(kCaller, undefined)
  fastify.decorateRequest('caller', {
    getter (this: WithCaller) {
      let caller = this[kCaller]
      // Made again once authentication has settled, if something asked before it.
      if (caller === undefined || (caller.actor === null && this.auth)) {
        const made = callerOf(this)
        if (caller) made.auditRows = caller.auditRows
        caller = this[kCaller] = made
      }
      return caller
    }
  })
  // Not named 'caller': fastify-plugin reads fn[camelCase(name)], and reading
  // `caller` of a strict-mode function throws, so `npm start` (tsx) died there.
}, { name: 'request-caller', dependencies: ['i18n'] })
