import { createRequire } from 'node:module'

/**
 * The password policy (SR-1, SR-3, SR-4) as plain functions, so the API, the
 * create-admin CLI and the start-up check of BOOTSTRAP_ADMIN_PASSWORD apply one
 * rule: a length in code points between PASSWORD_MIN_LENGTH and
 * PASSWORD_MAX_LENGTH, and not on the common-password list. Not a plugin
 * (autoload skips a module without one); plugins/app/auth/passwords.ts uses it.
 */
export type PasswordProblem = 'PASSWORD_TOO_SHORT' | 'PASSWORD_TOO_LONG' | 'WEAK_PASSWORD'
export interface PasswordLimits { min: number, max: number }

const require = createRequire(import.meta.url)
let common: ReadonlySet<string> | undefined

/**
 * The zxcvbn-ts list of ~49,000 leaked passwords, lower-cased, loaded once per
 * process. Synchronous, so the configuration check can use it before anything starts.
 */
export function commonPasswords (): ReadonlySet<string> {
  common ??= new Set((require('@zxcvbn-ts/language-common') as typeof import('@zxcvbn-ts/language-common'))
    .dictionary['passwords-common'].map((p) => p.toLowerCase()))
  return common
}

/**
 * Length in Unicode code points, which is what a person counts as characters (an
 * emoji is one). Only called on strings of at most 2 × max UTF-16 units.
 */
const codePointLength = (password: string) => [...password].length

/**
 * A code point is at most two UTF-16 units, so a string longer than 2 × max
 * units is too long without counting it (a 1 MiB body stays cheap).
 */
export const isTooLong = (password: string, max: number) =>
  password.length > max && (password.length > 2 * max || codePointLength(password) > max)

/** What is wrong with a new password, or undefined when the policy accepts it. */
export function passwordProblem (password: string, limits: PasswordLimits, list: ReadonlySet<string> = commonPasswords()): PasswordProblem | undefined {
  if (isTooLong(password, limits.max)) return 'PASSWORD_TOO_LONG'
  if (codePointLength(password) < limits.min) return 'PASSWORD_TOO_SHORT'
  if (list.has(password.toLowerCase())) return 'WEAK_PASSWORD'
  return undefined
}

/** The problem in one English line, for command-line tools and start-up errors. */
export function describePasswordProblem (problem: PasswordProblem, limits: PasswordLimits): string {
  return problem === 'WEAK_PASSWORD'
    ? 'the password is on the list of common passwords; choose another'
    : `the password must have ${limits.min} to ${limits.max} characters`
}
