import { lookup as dnsLookup } from 'node:dns/promises'
import { isIP, type LookupFunction } from 'node:net'
import { Readable } from 'node:stream'
import fp from 'fastify-plugin'
import ipaddr from 'ipaddr.js'
import type { Dispatcher } from 'undici'
import { AppError } from '../../../schemas/errors.ts'

/**
 * Server-side fetching of a client-supplied URL without SSRF (SR-36): http(s)
 * only, credentials stripped, every address the host resolves to must be
 * public, the connection is pinned to the checked address (a second DNS answer
 * cannot swap it: no rebinding), redirects are followed by hand and each hop is
 * checked again, one deadline covers lookups, redirects and body, and the body
 * is capped while it streams.
 */

export interface ResolvedAddress { address: string, family: 4 | 6 }
export type Resolver = (hostname: string) => Promise<ResolvedAddress[]>

export interface SafeFetchOptions {
  /** One deadline for the whole fetch: lookups, connections, redirects and the body. */
  timeoutMs: number
  maxRedirects: number
  /** Largest body accepted; a larger Content-Length or stream is FILE_TOO_LARGE. */
  maxBytes: number
  /** Tests only (refused in production by config.ts): 127.0.0.0/8 and ::1 count as public. */
  allowLoopback?: boolean
  /** DNS; defaults to the system resolver (dns.lookup, all addresses). */
  resolve?: Resolver
  /** The dispatcher of one hop, pinned to checked addresses; tests may hand in a MockAgent. */
  dispatcherFor?: (pinned: ResolvedAddress[]) => Dispatcher
  userAgent?: string
}

export interface FetchedBody {
  /** The response body, capped at maxBytes; errors are AppErrors. */
  body: Readable
  /** Content-Length announced by the server, when any. */
  length?: number
  /** The URL the body came from (after redirects), without credentials. */
  finalUrl: URL
  /** A display name taken from the last path segment of finalUrl. */
  name?: string
}

/** Where an address belongs; only `public` may be fetched. */
export type AddressRange =
  | 'public' | 'invalid' | 'unspecified' | 'loopback' | 'private' | 'carrier_grade_nat' | 'link_local'
  | 'multicast' | 'broadcast' | 'reserved' | 'unique_local' | 'site_local' | 'ipv4_embedded' | 'special'

const ipv4Ranges: Record<string, AddressRange> = {
  unicast: 'public',
  unspecified: 'unspecified',
  broadcast: 'broadcast',
  multicast: 'multicast',
  linkLocal: 'link_local',
  loopback: 'loopback',
  carrierGradeNat: 'carrier_grade_nat',
  private: 'private',
  reserved: 'reserved',
  as112: 'special',
  amt: 'special'
}

const ipv6Ranges: Record<string, AddressRange> = {
  unicast: 'public',
  unspecified: 'unspecified',
  linkLocal: 'link_local',
  multicast: 'multicast',
  loopback: 'loopback',
  uniqueLocal: 'unique_local',
  deprecatedSiteLocal: 'site_local',
  reserved: 'reserved'
}

const globalUnicast = ipaddr.IPv6.parseCIDR('2000::/3')
const nat64WellKnown = ipaddr.IPv6.parseCIDR('64:ff9b::/96')

/**
 * Classifies an IP address string (no DNS). Only canonical forms count: WHATWG
 * URL parsing already turns `http://2130706433/` or `0x7f.1` into dotted quads,
 * and anything else odd is `invalid`, never public. IPv6 forms that carry an
 * IPv4 address (mapped ::ffff:a.b.c.d, SIIT, NAT64 64:ff9b::/96, 6to4) are
 * judged by the IPv4 address inside; other IPv6 space is public only inside
 * 2000::/3 and outside the special-purpose blocks (Teredo, ORCHID, documentation...).
 */
export function classifyAddress (ip: string): AddressRange {
  const bare = ip.startsWith('[') && ip.endsWith(']') ? ip.slice(1, -1) : ip
  const version = isIP(bare)
  if (version === 0) return 'invalid'
  if (version === 4) return ipv4Ranges[ipaddr.IPv4.parse(bare).range()] ?? 'special'
  let address: ipaddr.IPv6
  try {
    address = ipaddr.IPv6.parse(bare)
  } catch {
    return 'invalid'
  }
  const range = address.range()
  const bytes = address.toByteArray()
  if (range === 'ipv4Mapped' || range === 'rfc6145' || address.match(nat64WellKnown)) return embedded(new ipaddr.IPv4(bytes.slice(12)))
  if (range === '6to4') return embedded(new ipaddr.IPv4(bytes.slice(2, 6)))
  const named = ipv6Ranges[range]
  if (named !== 'public') return named ?? 'special'
  return address.match(globalUnicast) ? 'public' : 'reserved'
}

function embedded (v4: ipaddr.IPv4): AddressRange {
  const inner = ipv4Ranges[v4.range()] ?? 'special'
  return inner === 'public' ? 'public' : inner
}

/** True when a URL fetch may connect to this address. */
export function isPublicAddress (ip: string, options: { allowLoopback?: boolean } = {}): boolean {
  const range = classifyAddress(ip)
  return range === 'public' || (range === 'loopback' && options.allowLoopback === true)
}

export const systemResolver: Resolver = async (hostname) => {
  const answers = await dnsLookup(hostname, { all: true, verbatim: true })
  return answers.map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }))
}

/** A net `lookup` that answers with the addresses already checked, never asking DNS again. */
export function pinnedLookup (pinned: ResolvedAddress[]): LookupFunction {
  return ((_hostname: string, options: { all?: boolean, family?: number | string }, callback: (...args: unknown[]) => void) => {
    const family = options.family === 6 || options.family === 'IPv6' ? 6 : options.family === 4 || options.family === 'IPv4' ? 4 : 0
    const usable = family === 0 ? pinned : pinned.filter((a) => a.family === family)
    if (usable.length === 0) {
      callback(Object.assign(new Error('no checked address of the requested family'), { code: 'ENOTFOUND' }))
      return
    }
    if (options.all) callback(null, usable.map((a) => ({ address: a.address, family: a.family })))
    else callback(null, usable[0].address, usable[0].family)
  }) as LookupFunction
}

// undici is loaded with the first URL upload: most instances never make one,
// and its HTTP client is a sizeable part of the start-up heap.
let undici: Promise<typeof import('undici')> | undefined
const loadUndici = () => (undici ??= import('undici'))

const pinnedAgent = ({ Agent }: typeof import('undici'), pinned: ResolvedAddress[], timeoutMs: number) => new Agent({
  connect: { lookup: pinnedLookup(pinned), timeout: timeoutMs },
  // One request per hop: nothing is kept for reuse by another host.
  pipelining: 0,
  keepAliveTimeout: 1,
  keepAliveMaxTimeout: 1
})

const REDIRECTS = new Set([301, 302, 303, 307, 308])

type Failure = 'timeout' | 'dns' | 'connect' | 'status' | 'too_many_redirects' | 'bad_redirect' | 'network'
const fetchFailed = (reason: Failure, extra: Record<string, unknown> = {}, cause?: unknown) =>
  new AppError('URL_FETCH_FAILED', { details: { reason, ...extra }, cause })

/** Parses and vets one hop's URL: http(s) only, no credentials kept. */
export function checkUrl (raw: string | URL, base?: URL): URL {
  let url: URL
  try {
    url = new URL(raw, base)
  } catch {
    throw new AppError('URL_NOT_ALLOWED', { details: { reason: 'invalid_url' } })
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new AppError('URL_NOT_ALLOWED', { details: { reason: 'scheme', scheme: url.protocol.replace(/:$/, '') } })
  }
  // Credentials in a URL would be sent to whoever answers, and logged on the way.
  url.username = ''
  url.password = ''
  url.hash = ''
  return url
}

/** Resolves a hop's host; refuses it when ANY of its addresses is not public. */
export async function resolvePublic (url: URL, options: Pick<SafeFetchOptions, 'allowLoopback' | 'resolve'>): Promise<ResolvedAddress[]> {
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname
  let addresses: ResolvedAddress[]
  if (isIP(host) !== 0) {
    addresses = [{ address: host, family: isIP(host) === 6 ? 6 : 4 }]
  } else {
    try {
      addresses = await (options.resolve ?? systemResolver)(host)
    } catch (error) {
      throw fetchFailed('dns', { host }, error)
    }
    if (addresses.length === 0) throw fetchFailed('dns', { host })
  }
  for (const { address } of addresses) {
    if (!isPublicAddress(address, options)) {
      // The range, not the address: a refusal should not map someone's internal DNS for them.
      throw new AppError('URL_NOT_ALLOWED', { details: { reason: 'non_public_address', host, range: classifyAddress(address) } })
    }
  }
  return addresses
}

/** Fetches a URL under the SSRF rules; resolves once the final response's headers are in. */
export async function safeFetch (raw: string, options: SafeFetchOptions): Promise<FetchedBody> {
  const controller = new AbortController()
  const deadline = setTimeout(() => controller.abort(), options.timeoutMs)
  const dispatchers: Dispatcher[] = []
  const release = () => {
    clearTimeout(deadline)
    // Never let cleanup replace the error being reported.
    for (const d of dispatchers.splice(0)) Promise.resolve().then(() => d.destroy()).catch(() => {})
  }
  const timedOut = () => controller.signal.aborted

  // A lookup of a name that never answers must not outlive the deadline either.
  const withDeadline = <T>(promise: Promise<T>) => new Promise<T>((resolve, reject) => {
    if (timedOut()) { reject(fetchFailed('timeout')); return }
    const onAbort = () => reject(fetchFailed('timeout'))
    controller.signal.addEventListener('abort', onAbort, { once: true })
    promise.then(resolve, reject).finally(() => controller.signal.removeEventListener('abort', onAbort))
  })

  try {
    let url = checkUrl(raw)
    const client = await loadUndici()
    for (let hop = 0; ; hop++) {
      const pinned = await withDeadline(resolvePublic(url, options))
      const dispatcher = options.dispatcherFor ? options.dispatcherFor(pinned) : pinnedAgent(client, pinned, options.timeoutMs)
      dispatchers.push(dispatcher)
      let response: Dispatcher.ResponseData
      try {
        response = await client.request(url, {
          dispatcher,
          method: 'GET',
          headers: { 'user-agent': options.userAgent ?? 'fastify-auth-backend (url upload)', accept: '*/*' },
          signal: controller.signal,
          headersTimeout: options.timeoutMs,
          bodyTimeout: options.timeoutMs
        })
      } catch (error) {
        if (timedOut() || isUndiciTimeout(error)) throw fetchFailed('timeout', {}, error)
        throw fetchFailed('connect', { host: url.hostname }, error)
      }
      if (REDIRECTS.has(response.statusCode)) {
        response.body.dump().catch(() => {})
        const location = response.headers.location
        if (typeof location !== 'string' || location === '') throw fetchFailed('bad_redirect')
        if (hop >= options.maxRedirects) throw fetchFailed('too_many_redirects', { max: options.maxRedirects })
        url = checkUrl(location, url)
        continue
      }
      if (response.statusCode < 200 || response.statusCode > 299) {
        response.body.dump().catch(() => {})
        throw fetchFailed('status', { upstream_status: response.statusCode })
      }
      const declared = Number(response.headers['content-length'])
      const length = Number.isFinite(declared) && declared >= 0 ? declared : undefined
      if (length !== undefined && length > options.maxBytes) {
        response.body.dump().catch(() => {})
        throw new AppError('FILE_TOO_LARGE', { details: { max_bytes: options.maxBytes } })
      }
      const body = Readable.from(capped(response.body, options.maxBytes, timedOut), { objectMode: false })
      body.once('close', release)
      return { body, length, finalUrl: url, name: nameFromUrl(url) }
    }
  } catch (error) {
    release()
    throw error
  }
}

async function * capped (source: AsyncIterable<Buffer>, maxBytes: number, timedOut: () => boolean): AsyncGenerator<Buffer> {
  let seen = 0
  try {
    for await (const chunk of source) {
      seen += chunk.length
      if (seen > maxBytes) throw new AppError('FILE_TOO_LARGE', { details: { max_bytes: maxBytes } })
      yield chunk
    }
  } catch (error) {
    if (error instanceof AppError) throw error
    throw timedOut() || isUndiciTimeout(error) ? fetchFailed('timeout', {}, error) : fetchFailed('network', {}, error)
  }
}

/**
 * undici's own connect/headers/body timeouts are set to the same deadline; on a busy
 * event loop one of them can fire before ours does. Either way it is a timeout.
 */
const undiciTimeouts = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT'])
const isUndiciTimeout = (error: unknown) => undiciTimeouts.has((error as { code?: string } | null)?.code ?? '')

function nameFromUrl (url: URL): string | undefined {
  const last = url.pathname.split('/').filter(Boolean).pop()
  if (!last) return undefined
  try {
    return decodeURIComponent(last)
  } catch {
    return last
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    /** safeFetch with the configured deadline, redirect limit and loopback policy. */
    fetchUrl: (url: string, maxBytes: number) => Promise<FetchedBody>
  }
}

export default fp(async (fastify) => {
  const { UPLOAD_URL_TIMEOUT_MS, UPLOAD_URL_MAX_REDIRECTS, UPLOAD_URL_ALLOW_LOOPBACK } = fastify.config
  fastify.decorate('fetchUrl', (url: string, maxBytes: number) => safeFetch(url, {
    timeoutMs: UPLOAD_URL_TIMEOUT_MS,
    maxRedirects: UPLOAD_URL_MAX_REDIRECTS,
    maxBytes,
    allowLoopback: UPLOAD_URL_ALLOW_LOOPBACK
  }))
}, { name: 'url-fetch' })
