import { parsePhoneNumberFromString } from 'libphonenumber-js/max'

/**
 * Contact addresses in their one stored form: emails lower-cased, phone numbers
 * E.164; login identifiers (email, phone or user name) recognised by shape; and
 * the masked form that audit rows and messages show. Not a plugin: autoload skips it.
 */
export type IdentifierKind = 'email' | 'phone' | 'user_name'

/** Emails are stored and compared lower-cased and trimmed. */
export const normalizeEmail = (raw: string): string => raw.trim().toLowerCase()

/** E.164 or undefined; numbers must carry their country code (+...). */
export function normalizePhone (raw: string): string | undefined {
  const parsed = parsePhoneNumberFromString(raw.startsWith('+') ? raw : `+${raw}`)
  return parsed?.isValid() ? parsed.number : undefined
}

/** Lower-cased email, E.164 phone, or trimmed user name; `undefined` when it cannot be one. */
export function normalizeIdentifier (raw: string): { kind: IdentifierKind, value: string } | undefined {
  const value = raw.trim()
  if (value.length === 0 || value.length > 320) return undefined
  if (value.includes('@')) return { kind: 'email', value: normalizeEmail(value) }
  if (/^\+?[\d\s().-]{6,}$/.test(value)) {
    const phone = normalizePhone(value)
    return phone ? { kind: 'phone', value: phone } : undefined
  }
  return { kind: 'user_name', value }
}

/** "a***@example.com", "+33******78": enough to recognise an address, not to harvest it. */
export function maskAddress (value: string): string {
  const at = value.lastIndexOf('@')
  if (at > 0) return `${value[0]}***${value.slice(at)}`
  if (value.length <= 5) return '*'.repeat(value.length)
  return value.slice(0, 3) + '*'.repeat(value.length - 5) + value.slice(-2)
}
