/**
 * The one place that decides what is a secret and hides it: query-string values
 * in every URL written somewhere (request logs, error reports), keys and values
 * of activity metadata, error reports and log lines (SR-15, SR-33, SR-38).
 * Not a plugin: autoload skips a module without one.
 *
 * A credential in the query string is refused by the API (SR-17), but the
 * refused request is still logged; signed download links carry their
 * signature there by design (local `signature`, GCS `X-Goog-Signature`).
 */
export const SECRET_QUERY_KEY = /token|jwt|signature|secret|pass(word)?|otp|credential|api[-_]?key|^(code|sig|key|auth)$/i

export const REDACTED = '[redacted]'

function decodedKey (raw: string): string {
  try {
    return decodeURIComponent(raw.replace(/\+/g, ' '))
  } catch {
    return raw
  }
}

/**
 * The URL with the value of every secret query parameter replaced by
 * `[redacted]`; the path, the other parameters and their order are kept as
 * sent. Keys are compared decoded, so `%61ccess_token` is caught too.
 */
export function redactUrl (url: string): string
export function redactUrl (url: string | undefined): string | undefined
export function redactUrl (url: string | undefined): string | undefined {
  if (url === undefined) return url
  const q = url.indexOf('?')
  if (q === -1) return url
  const hash = url.indexOf('#', q)
  const query = hash === -1 ? url.slice(q + 1) : url.slice(q + 1, hash)
  let changed = false
  const parts = query.split('&').map((part) => {
    const eq = part.indexOf('=')
    const key = eq === -1 ? part : part.slice(0, eq)
    if (!SECRET_QUERY_KEY.test(decodedKey(key))) return part
    changed = true
    return `${key}=${REDACTED}`
  })
  if (!changed) return url
  return `${url.slice(0, q + 1)}${parts.join('&')}${hash === -1 ? '' : url.slice(hash)}`
}

/**
 * Which object keys, and which string values, name a secret for one destination.
 * `maxDepth` bounds the walk: objects nested deeper are kept as they are.
 */
export interface SecretRules { key: RegExp, value?: RegExp, maxDepth: number }

/** Activity metadata (SR-38): keys ending in a secret's name, values shaped like a JWT. */
export const METADATA_SECRETS: SecretRules = {
  key: /(^|[_-])(password|passwd|passcode|otp|code|token|secret|authorization|cookie|api[_-]?key)$/i,
  value: /^ey[A-Za-z0-9_-]{8,}\.ey[A-Za-z0-9_-]{8,}\./,
  maxDepth: 4
}

/** Error reports (SR-33): any key mentioning a secret, session or DSN, headers included. */
export const REPORT_SECRETS: SecretRules = {
  key: /pass(word)?|secret|token|otp|code|authorization|cookie|session|api[-_]?key|dsn/i,
  maxDepth: 8
}

/** Log lines (SR-15, SR-33): pino's paths, for the structured fields it redacts itself. */
export const redactPaths = [
  'req.headers.authorization', 'req.headers.cookie', 'req.headers["x-session-token"]',
  'res.headers["set-cookie"]', '*.password', '*.current_password', '*.new_password', '*.otp',
  '*.access_token', '*.refresh_token', '*.session_token', '*.token'
]

/** A copy of the value with every secret the rules name replaced by `[redacted]`, at any depth up to theirs. */
export function redactSecrets (value: unknown, rules: SecretRules, depth = 0): unknown {
  if (typeof value === 'string') return rules.value?.test(value) ? REDACTED : value
  if (value === null || typeof value !== 'object' || depth > rules.maxDepth) return value
  if (Array.isArray(value)) return value.map((v) => redactSecrets(v, rules, depth + 1))
  const out: Record<string, unknown> = {}
  for (const [key, v] of Object.entries(value)) out[key] = rules.key.test(key) ? REDACTED : redactSecrets(v, rules, depth + 1)
  return out
}
