/**
 * The PostgreSQL error behind a failed query, whichever driver ran it.
 * Drizzle wraps driver errors (DrizzleQueryError, the original in `cause`);
 * postgres.js names the violated constraint `constraint_name`, PGlite `constraint`.
 */
export interface PgErrorInfo {
  /** SQLSTATE, e.g. 23505 unique_violation, 23503 foreign_key_violation, 23514 check_violation. */
  code: string
  constraint?: string
  /** The server's message, e.g. `time zone "x" not recognized`. */
  message?: string
}

export const PG_UNIQUE_VIOLATION = '23505'
export const PG_FOREIGN_KEY_VIOLATION = '23503'
export const PG_CHECK_VIOLATION = '23514'
export const PG_INVALID_PARAMETER_VALUE = '22023'

export function pgError (error: unknown): PgErrorInfo | undefined {
  for (let current = error, depth = 0; current instanceof Object && depth < 5; current = (current as { cause?: unknown }).cause, depth++) {
    const candidate = current as { code?: unknown, constraint_name?: unknown, constraint?: unknown, message?: unknown }
    if (typeof candidate.code === 'string' && /^[0-9A-Z]{5}$/.test(candidate.code)) {
      const constraint = candidate.constraint_name ?? candidate.constraint
      return { code: candidate.code, constraint: typeof constraint === 'string' ? constraint : undefined, message: typeof candidate.message === 'string' ? candidate.message : undefined }
    }
  }
  return undefined
}

/** True for a unique violation, optionally of one named constraint or index (e.g. `user_email_lower_key`). */
export function isUniqueViolation (error: unknown, constraint?: string): boolean {
  const info = pgError(error)
  return info?.code === PG_UNIQUE_VIOLATION && (constraint === undefined || info.constraint === constraint)
}
