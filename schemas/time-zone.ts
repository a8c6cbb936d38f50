import { Type } from '@sinclair/typebox'
import { AppError } from './errors.ts'

/** The `tz` query parameter of the statistics (dashboard, activity). */
export const TimeZoneParam = Type.String({ minLength: 1, maxLength: 64, default: 'UTC', description: 'IANA time zone name, e.g. Europe/Paris' })

// Names only: numeric offsets ('+05:00', 'UTC+5') mean the opposite sign to PostgreSQL (POSIX rules).
const ZONE_NAME = /^[A-Za-z][A-Za-z0-9_+-]*(\/[A-Za-z][A-Za-z0-9_+-]*)*$/

/** The canonical spelling of an IANA time zone, or a 400 naming the parameter. */
export function resolveTimeZone (value: string, field = 'querystring/tz'): string {
  if (ZONE_NAME.test(value) && !/^(UTC|GMT)[+-]/i.test(value)) {
    try {
      return new Intl.DateTimeFormat('en', { timeZone: value }).resolvedOptions().timeZone
    } catch { /* answered below */ }
  }
  throw new AppError('VALIDATION_ERROR', { details: [{ field, message: 'must be an IANA time zone name, e.g. Europe/Paris' }] })
}
