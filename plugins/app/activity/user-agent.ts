import { UAParser } from 'ua-parser-js'

export interface ParsedAgent { device: string | null, browser: string | null, os: string | null }

const agentCache = new Map<string, ParsedAgent>()
const AGENT_CACHE_MAX = 500

/** device type / browser / OS of a user agent (ua-parser-js), remembered: agents repeat a lot. */
export function parseUserAgent (userAgent: string | null | undefined): ParsedAgent {
  if (!userAgent) return { device: null, browser: null, os: null }
  const known = agentCache.get(userAgent)
  if (known) return known
  const { browser, os, device } = UAParser(userAgent)
  // API clients (curl, okhttp, SDKs) are no browsers, but their product token says what they are.
  const product = /^([A-Za-z][\w.-]*)\/(\d+)/.exec(userAgent)
  const parsed: ParsedAgent = {
    device: device.type ?? (os.name ? 'desktop' : null),
    browser: browser.name ? [browser.name, browser.major].filter(Boolean).join(' ') : product && product[1] !== 'Mozilla' ? `${product[1]} ${product[2]}` : null,
    os: os.name ? [os.name, os.version].filter(Boolean).join(' ') : null
  }
  if (agentCache.size >= AGENT_CACHE_MAX) agentCache.delete(agentCache.keys().next().value!)
  agentCache.set(userAgent, parsed)
  return parsed
}
