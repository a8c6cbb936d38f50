import { eq, getTableColumns, sql } from 'drizzle-orm'
import { SerializerSelector } from '@fastify/fast-json-stringify-compiler'
import { activityLog, type NewActivityLog } from '../../../db/schema/index.ts'
import type { Database } from '../../../db/client.ts'

/**
 * The one module that writes the activity_log table: batches of rows from the
 * buffer (buffer.ts), as one prepared statement (docs/performance.md).
 */

/** The rows could not be turned into the batch parameter (a value nested too deeply for JSON.stringify, say). */
export class UnserializableRowsError extends Error {
  constructor (cause: unknown) {
    super('activity rows could not be serialized', { cause })
    this.name = 'UnserializableRowsError'
  }
}

const activityColumns = Object.values(getTableColumns(activityLog))
const activityColumnList = sql.join(activityColumns.map((column) => sql.identifier(column.name)), sql`, `)
const activityRecordType = sql.raw(activityColumns.map((column) => `"${column.name}" ${column.getSQLType()}`).join(', '))

/** JSON schema of one row, from the table's columns: absent and null fields both become NULL. */
function columnSchema (column: (typeof activityColumns)[number]): Record<string, unknown> {
  switch (column.dataType) {
    case 'date': return { type: 'string', format: 'date-time' }
    case 'number': return { type: ['integer', 'null'] }
    case 'json': return {}
    default: return { type: ['string', 'null'] }
  }
}

/**
 * The batch parameter, serialized by a compiled serializer (fast-json-stringify, as
 * Fastify does for responses) from the table's column types: one row per mutating
 * request passes through it (docs/performance.md).
 */
const serializeRows = SerializerSelector()({}, {})({
  schema: { type: 'array', items: { type: 'object', properties: Object.fromEntries(activityColumns.map((column) => [column.name, columnSchema(column)])) } },
  method: 'INSERT',
  url: 'activity_log',
  httpStatus: '200'
}) as (rows: readonly NewActivityLog[]) => string

// What PostgreSQL refuses in text and json(b) values (22P05, 22P02), as the serializer
// escapes it: NUL, and surrogates (the test is cheap; well-formed pairs are sorted out by the repair).
const UNSTORABLE_ESCAPE = /\\u0000|\\ud[89a-f]/i
// eslint-disable-next-line no-control-regex -- NUL is exactly what is looked for
const UNSTORABLE_CHARACTER = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g

/** The string with NUL and lone surrogates replaced by U+FFFD, which PostgreSQL stores. */
export function storableText (value: string): string {
  return value.replace(UNSTORABLE_CHARACTER, '\ufffd')
}

function storableValue (value: unknown): unknown {
  if (typeof value === 'string') return storableText(value)
  if (value === null || typeof value !== 'object') return value
  if (Array.isArray(value)) return value.map(storableValue)
  const out: Record<string, unknown> = {}
  for (const [key, v] of Object.entries(value)) out[storableText(key)] = storableValue(v)
  return out
}

/**
 * The batch parameter, which every row passes through: strings of any column, user
 * agents, headers and metadata keys and values alike, with what PostgreSQL refuses
 * replaced (SR-38: a NUL or a lone surrogate in a reason must not cost the row).
 */
export function serializeStorableRows (rows: readonly NewActivityLog[]): string {
  let json: string
  try {
    json = serializeRows(rows)
    return UNSTORABLE_ESCAPE.test(json) ? JSON.stringify(storableValue(JSON.parse(json))) : json
  } catch (error) {
    throw new UnserializableRowsError(error)
  }
}

type ActivityInsert = ReturnType<typeof prepareActivityInsert>
const preparedInserts = new WeakMap<Database, ActivityInsert>()

function prepareActivityInsert (db: Database) {
  return db.insert(activityLog).select(sql`select ${activityColumnList}
    from json_to_recordset(${sql.placeholder('rows')}::json) as r(${activityRecordType})`)
    .onConflictDoNothing().prepare('activity_log_insert')
}

/**
 * Writes a batch of rows with one statement whose text never changes: the rows
 * travel as one JSON parameter, unpacked by json_to_recordset into the table's
 * columns (typed from the drizzle schema), so it is built and prepared once per
 * database handle. `json`, not `jsonb`: the text is read once into the rows without
 * a conversion to jsonb's binary form (docs/performance.md, "json_to_recordset
 * activity insert"). Rows carry their log_id and created_at (set when queued; no
 * column default applies here). A batch written again after an error is skipped
 * row by row (log_id conflict).
 */
export async function insertActivityRows (db: Database, rows: readonly NewActivityLog[]): Promise<void> {
  if (rows.length === 0) return
  let insert = preparedInserts.get(db)
  if (!insert) preparedInserts.set(db, insert = prepareActivityInsert(db))
  await insert.execute({ rows: serializeStorableRows(rows) })
}

/**
 * Account deletion: the user's rows stay (the events happened) without the link to
 * the deleted user. `db` may be a transaction, so the unlink commits with the deletion.
 */
export async function unlinkActor (db: Pick<Database, 'update'>, userId: string): Promise<void> {
  await db.update(activityLog).set({ user_id: null }).where(eq(activityLog.user_id, userId))
}
