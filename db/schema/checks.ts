import { sql, type SQL } from 'drizzle-orm'
import type { AnyPgColumn } from 'drizzle-orm/pg-core'

/**
 * `column IN ('a', 'b')` for a CHECK constraint. The values are inlined as
 * literals (escaped by Drizzle) because DDL cannot take bind parameters; they
 * come from the constant lists in this folder, never from input.
 */
export function inList (column: AnyPgColumn, values: readonly string[]): SQL {
  return sql`${column} in (${sql.join(values.map((v) => sql`${sql.raw(quoteLiteral(v))}`), sql`, `)})`
}

function quoteLiteral (value: string): string {
  if (!/^[a-z_]+$/.test(value)) throw new Error(`unexpected enum value in a check constraint: ${value}`)
  return `'${value}'`
}
