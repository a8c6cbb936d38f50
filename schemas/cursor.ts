import { AppError } from './errors.ts'
import { badText } from './boundary.ts'

/**
 * The one decoder of the API's keyset cursors (SR-29). A cursor is base64url
 * JSON the API issued, but the client sends it back, so each field is checked
 * as a value before it reaches a query: a field that is not a valid value of
 * its column (a date PostgreSQL cannot read, text with NUL) is a 400, never a
 * 500 from the database.
 */
export function decodeCursor<T> (raw: string, check: (value: unknown) => value is T, message = 'is not a cursor this API issued'): T {
  if (raw.length <= 2048) {
    try {
      const value = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as unknown
      if (check(value)) return value
    } catch { /* answered below */ }
  }
  throw new AppError('VALIDATION_ERROR', { details: [{ field: 'querystring/cursor', message }] })
}

export const encodeCursor = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

export const isUuid = (value: unknown): value is string => typeof value === 'string' && UUID.test(value)

/** Text a column can hold: a string of at most `max` characters, without NUL or lone surrogates. */
export const isText = (value: unknown, max: number): value is string => typeof value === 'string' && value.length <= max && !badText(value)

/**
 * A timestamp: `YYYY-MM-DD`, a `T` or a space, `HH:MM:SS`, up to 6 fractional
 * digits and `Z` or an offset (`+00`, `+05:30`), as JavaScript's toISOString and
 * PostgreSQL's timestamptz text write it; a four-digit year, and a real calendar
 * date (no 30 February), so PostgreSQL and JavaScript read the same instant.
 */
const TIMESTAMP = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(\.\d{1,6})?(Z|[+-]\d{2}(?::?\d{2})?)$/

export function isTimestamp (value: unknown): value is string {
  if (typeof value !== 'string' || value.length > 40) return false
  const m = TIMESTAMP.exec(value)
  if (!m) return false
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number)
  if (year < 1 || month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) return false
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0)
  return day <= (month === 2 ? (leap ? 29 : 28) : [4, 6, 9, 11].includes(month) ? 30 : 31)
}
