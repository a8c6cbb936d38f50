/**
 * The one check of IANA time zone names (profile and settings, sign-up). Not a
 * plugin: autoload skips it.
 */

// Names only: numeric offsets (+05:00) are not IANA names, although some ICU versions accept them.
const ZONE_NAME = /^[A-Za-z][A-Za-z0-9_+-]*(\/[A-Za-z0-9_+-]+)*$/

const knownZones = new Map(Intl.supportedValuesOf('timeZone').map((z) => [z.toLowerCase(), z]))

/** A time zone the runtime knows? */
export function isTimeZone (value: string): boolean {
  try {
    // eslint-disable-next-line no-new
    new Intl.DateTimeFormat('en', { timeZone: value })
    return true
  } catch {
    return false
  }
}

/** An IANA zone name in its canonical spelling ("europe/paris" → "Europe/Paris"); undefined when it is none. */
export function canonicalTimeZone (value: string): string | undefined {
  if (value.toUpperCase() === 'UTC') return 'UTC'
  if (!ZONE_NAME.test(value) || !isTimeZone(value)) return undefined
  return knownZones.get(value.toLowerCase()) ?? value
}
