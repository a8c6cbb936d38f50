import fp from 'fastify-plugin'
import { catalogs, defaultLanguage, isSupportedLanguage, type Language } from '../../../i18n/index.ts'

/**
 * Language of a response: `?lang`, then the caller's saved language (set by the
 * auth plugin as `request.userLanguage`), then `Accept-Language`, else English.
 * Sent back as `Content-Language`.
 */
declare module 'fastify' {
  interface FastifyRequest {
    /** The saved language of the authenticated user, when known. */
    userLanguage?: string
    /** The negotiated language (computed once, on first use). */
    readonly lang: Language
    /** Translates a catalog key, filling `{name}` placeholders. */
    t: (key: string, params?: Record<string, string | number>) => string
  }
}

const kLang = Symbol('lang')

export function negotiateLanguage (acceptLanguage: string | undefined): Language | undefined {
  if (!acceptLanguage) return undefined
  const ranked = acceptLanguage.split(',').map((part, index) => {
    const [tag, ...params] = part.trim().split(';')
    const q = params.map((p) => p.trim()).find((p) => p.startsWith('q='))
    return { tag: tag.trim().toLowerCase(), q: q ? Number(q.slice(2)) : 1, index }
  }).filter((r) => r.tag && !Number.isNaN(r.q) && r.q > 0)
    .sort((a, b) => b.q - a.q || a.index - b.index)
  for (const { tag } of ranked) {
    const base = tag.split('-')[0]
    if (isSupportedLanguage(base)) return base
  }
  return undefined
}

export function translate (lang: Language, key: string, params?: Record<string, string | number>): string {
  const text = catalogs[lang][key] ?? catalogs[defaultLanguage][key] ?? key
  if (!params) return text
  return text.replace(/\{(\w+)\}/g, (whole, name: string) => (name in params ? String(params[name]) : whole))
}

/** What the language is read from (a FastifyRequest fits). */
interface LanguageSource {
  query: unknown
  userLanguage?: string
  headers: { 'accept-language'?: string }
  [kLang]?: Language
}

function resolve (request: LanguageSource): Language {
  const query = request.query as Record<string, unknown> | undefined
  const fromQuery = typeof query?.lang === 'string' ? query.lang.toLowerCase() : undefined
  if (fromQuery && isSupportedLanguage(fromQuery)) return fromQuery
  if (request.userLanguage && isSupportedLanguage(request.userLanguage)) return request.userLanguage
  return negotiateLanguage(request.headers['accept-language']) ?? defaultLanguage
}

export default fp(async (fastify) => {
  fastify.decorateRequest(kLang, undefined)
  fastify.decorateRequest('lang', {
    getter (this: LanguageSource) {
      this[kLang] ??= resolve(this)
      return this[kLang]
    }
  })
  fastify.decorateRequest('t', function (this: { lang: Language }, key: string, params?: Record<string, string | number>) {
    return translate(this.lang, key, params)
  })
  fastify.addHook('onSend', (request, reply, payload, done) => {
    reply.header('Content-Language', request.lang)
    done(null, payload)
  })
}, { name: 'i18n' })
