/**
 * The one place that decides which query-string values are secrets, so every
 * place that writes a URL somewhere (request logs, error reports) hides the
 * same ones (SR-15, SR-33). Not a plugin: autoload skips a module without one.
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
