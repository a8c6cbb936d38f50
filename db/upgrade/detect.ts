import type postgres from 'postgres'

/**
 * Recognises a database of the original Express/Prisma project by its shape
 * (see ORIGINAL-DB.md; it has no migrations table, so nothing else tells):
 * `public.user.phone_number` is jsonb. This project stores it as text from its
 * first migration on, and no other schema has that column with that type.
 * A database on which this project's migrations ran (a row in
 * `drizzle.__drizzle_migrations`) is never an original one, whatever it holds.
 *
 * Once recognised, the six original tables must all be there with the columns
 * the upgrade reads; a database that has the marker but not the rest is refused
 * with the list of what is missing, rather than upgraded by guesswork.
 */

export const originalTables = {
  user: ['user_id', 'email', 'user_name', 'phone_number', 'password', 'status', 'is_active', 'is_trashed', 'created_at', 'last_updated', 'last_sign_in_at', 'dob', 'country', 'user_type', 'auth_type', 'theme', 'profile_accessibility', 'timezone', 'language'],
  group: ['group_id', 'name', 'codename', 'description', 'is_system', 'is_active', 'created_at', 'last_updated'],
  permission: ['permission_id', 'name', 'codename', 'description', 'category', 'created_at', 'last_updated'],
  group_permission: ['id', 'group_id', 'permission_id', 'created_at'],
  user_group: ['id', 'user_id', 'group_id', 'assigned_at', 'assigned_by_user_id'],
  activity_log: ['log_id', 'user_id', 'level', 'message', 'action', 'module', 'platform', 'session_id', 'metadata', 'error_details', 'created_at']
} as const

export type Detection =
  | { kind: 'current' } // this project's migrations ran here
  | { kind: 'other' } // fresh, or not the original's shape: the migrator handles it as before
  | { kind: 'original' }

export class PartialOriginalDatabaseError extends Error {
  constructor (readonly missing: string[]) {
    super('The database looks like the original Express/Prisma project\'s (user.phone_number is jsonb) but lacks ' +
      `${missing.join(', ')}; not upgrading it. Restore a complete backup or bring it to the shape of ORIGINAL-DB.md first.`)
    this.name = 'PartialOriginalDatabaseError'
  }
}

export async function detectDatabase (sql: postgres.Sql | postgres.TransactionSql): Promise<Detection> {
  const [{ migrations }] = await sql<Array<{ migrations: boolean }>>`
    select to_regclass('drizzle.__drizzle_migrations') is not null as migrations`
  if (migrations) {
    const [{ applied }] = await sql<Array<{ applied: boolean }>>`select exists (select 1 from drizzle.__drizzle_migrations) as applied`
    if (applied) return { kind: 'current' }
  }
  const columns = await sql<Array<{ table_name: string, column_name: string, data_type: string }>>`
    select table_name, column_name, data_type from information_schema.columns
    where table_schema = 'public' and table_name in ${sql(Object.keys(originalTables))}`
  const marker = columns.find((c) => c.table_name === 'user' && c.column_name === 'phone_number')
  if (marker?.data_type !== 'jsonb') return { kind: 'other' }
  const present = new Set(columns.map((c) => `${c.table_name}.${c.column_name}`))
  const missing = Object.entries(originalTables).flatMap(([table, names]) =>
    (names as readonly string[]).filter((name) => !present.has(`${table}.${name}`)).map((name) => `${table}.${name}`))
  if (missing.length > 0) throw new PartialOriginalDatabaseError(missing)
  return { kind: 'original' }
}
