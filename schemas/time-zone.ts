import { Type } from '@sinclair/typebox'
import { AppError } from './errors.ts'

/**
 * The one check of IANA time zone names: profile and sign-up fields, and the
 * `tz` parameter of the statistics (dashboard, activity).
 */

/** The `tz` query parameter of the statistics (dashboard, activity). */
export const TimeZoneParam = Type.String({ minLength: 1, maxLength: 64, default: 'UTC', description: 'IANA time zone name, e.g. Europe/Paris' })

// Names only: numeric offsets ('+05:00') are not IANA names, although some ICU versions
// accept them, and they mean the opposite sign to PostgreSQL (POSIX rules).
const ZONE_NAME = /^[A-Za-z][A-Za-z0-9_+-]*(\/[A-Za-z0-9_+-]+)*$/
const OFFSET_NAME = /^(UTC|GMT)[+-]/i

let knownZones: Map<string, string> | undefined

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
  if (!ZONE_NAME.test(value) || OFFSET_NAME.test(value) || !isTimeZone(value)) return undefined
  knownZones ??= new Map(Intl.supportedValuesOf('timeZone').map((z) => [z.toLowerCase(), z]))
  return knownZones.get(value.toLowerCase()) ?? new Intl.DateTimeFormat('en', { timeZone: value }).resolvedOptions().timeZone
}

/** The canonical spelling of an IANA time zone, or a 400 naming the parameter. */
export function resolveTimeZone (value: string, field = 'querystring/tz'): string {
  const zone = canonicalTimeZone(value)
  if (zone === undefined) throw new AppError('VALIDATION_ERROR', { details: [{ field, message: 'must be an IANA time zone name, e.g. Europe/Paris' }] })
  return zone
}
