import { readMigrationFiles } from 'drizzle-orm/migrator'
import type postgres from 'postgres'
import { defaultGroups, defaultPermissions } from '../defaults.ts'
import { activityLevels } from '../schema/activity.ts'
import { detectDatabase, originalTables } from './detect.ts'
import { mapCountry, mapPhone } from './normalize.ts'
import { dedupe, list, mapDistinct, quarantineUsers, stageUsers, userMappings, utc } from './users.ts'

/**
 * In-place upgrade of a database of the original Express/Prisma project
 * (../../../shared/spec/ORIGINAL-DB.md) to this project's schema, in ONE
 * transaction (a failure anywhere leaves the database as it was):
 *
 * 1. prepare: the schema `legacy_upgrade` (quarantine, original rows, run
 *    reports; kept after the upgrade) and `legacy_original`, into which the six
 *    original tables move with their indexes and constraints (so their names
 *    are free for the new ones).
 * 2. tables: the CREATE TABLE statements of the baseline migration (0000),
 *    verbatim: the end state is exactly what the migrations produce.
 * 3. rbac: permissions and groups keep their ids; links keep their pairs.
 * 4. users: staged in a temporary table, mapped (phones to E.164, countries to
 *    ISO codes, enums, statuses, timestamps read as UTC, dob to date); values
 *    that break a new rule are set aside in `legacy_upgrade.quarantine`.
 * 5. memberships.
 * 6. activity_log: one INSERT ... SELECT inside the database, into a table
 *    without secondary indexes (they are built once, in step 7).
 * 7. constraints: the rest of the baseline migration (foreign keys, indexes).
 * 8. finish: the original tables are dropped (the values that had no place
 *    are in `legacy_upgrade`), the baseline migration is recorded in
 *    `drizzle.__drizzle_migrations` exactly as Drizzle's migrator records it,
 *    and the report is stored. The normal migrator then applies anything newer.
 */

export const upgradeSteps = ['prepare', 'tables', 'rbac', 'users', 'memberships', 'activity_log', 'constraints', 'finish'] as const
export type UpgradeStep = typeof upgradeSteps[number]

/** The migration the upgrade stands in for; later ones apply normally on top. */
export const BASELINE_MIGRATION = '0000_init'

export interface UpgradeOptions {
  migrationsFolder: string
  /** Runs everything, then rolls back: the report of a real run, nothing changed. */
  dryRun?: boolean
  /** Tests: throw right after this step, to show that nothing stays. */
  failAfterStep?: UpgradeStep
}

export interface TableCount { table: string, before: number, after: number, quarantined: number }
export interface Mapping { table: string, column: string, from: string | null, to: string | null, rows: number }
export interface Conflict { table: string, rowId: string, column: string, value: string | null, reason: string, action: string }

export interface UpgradeReport {
  dryRun: boolean
  tables: TableCount[]
  /** Values changed with certainty (case, spelling, format), grouped. */
  mappings: Mapping[]
  /** Every quarantined value, as in `legacy_upgrade.quarantine`, at most `conflictLimit` per reason. */
  conflicts: Conflict[]
  /** All quarantined values per reason (also those beyond the listed ones). */
  conflictCounts: Record<string, number>
  conflictLimit: number
  /** Milliseconds per step. */
  timings: Partial<Record<UpgradeStep, number>>
}

export class InjectedUpgradeFailure extends Error {
  constructor (readonly step: UpgradeStep) {
    super(`upgrade stopped after step ${step} (test hook)`)
    this.name = 'InjectedUpgradeFailure'
  }
}

class DryRunRollback extends Error {}

const CONFLICT_LIMIT = 1000
const LOCK_TIMEOUT = '30s'

/**
 * The level of an original activity row: the known ones in any case, `warn`
 * and `fatal` by their usual meaning; anything else is 'info' (and quarantined).
 */
const levelExpression = `case lower(btrim(a.level))
  ${activityLevels.map((l) => `when '${l}' then '${l}'`).join(' ')}
  when 'warn' then 'warning' when 'fatal' then 'critical' else 'info' end`
const levelKnown = `lower(btrim(a.level)) in (${list([...activityLevels, 'warn', 'fatal'])})`
const uuidPattern = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'

/**
 * Upgrades the database if it is an original one; returns the report, or
 * undefined when it is not (nothing done). The caller holds the migration
 * advisory lock on this connection.
 */
export async function upgradeOriginalDatabase (client: postgres.Sql, options: UpgradeOptions): Promise<UpgradeReport | undefined> {
  const baseline = readMigrationFiles({ migrationsFolder: options.migrationsFolder })[0]
  if (!baseline) throw new Error('upgrade: no baseline migration found')
  let report: UpgradeReport | undefined
  try {
    await client.begin(async (sql) => {
      const detection = await detectDatabase(sql)
      if (detection.kind !== 'original') return
      // A big activity log must not meet a role's statement_timeout half-way; a
      // lock held by the old app (still running) must fail fast, not hang.
      await sql`select set_config('statement_timeout', '0', true), set_config('lock_timeout', ${LOCK_TIMEOUT}, true)`
      try {
        report = await runSteps(sql, baseline, options)
      } catch (error) {
        if ((error as { code?: string }).code === '55P03') {
          throw new Error(`upgrade: another session holds a lock on an original table (is the old app still running?); stop it and run again. Nothing was changed. (${(error as Error).message})`)
        }
        throw error
      }
      if (options.dryRun) throw new DryRunRollback()
    })
  } catch (error) {
    if (!(error instanceof DryRunRollback)) throw error
  }
  return report
}

interface Baseline { sql: string[], hash: string, folderMillis: number }

async function runSteps (sql: postgres.TransactionSql, baseline: Baseline, options: UpgradeOptions): Promise<UpgradeReport> {
  const timings: UpgradeReport['timings'] = {}
  const step = async (name: UpgradeStep, work: () => Promise<void>) => {
    const started = performance.now()
    await work()
    timings[name] = Math.round(performance.now() - started)
    if (options.failAfterStep === name) throw new InjectedUpgradeFailure(name)
  }
  const statements = baseline.sql.map((s) => s.trim()).filter((s) => s.length > 0)
  const createTables = statements.filter((s) => /^create table/i.test(s))
  const afterData = statements.filter((s) => !/^create table/i.test(s))
  const before: Record<string, number> = {}
  const mappings: Mapping[] = []

  await step('prepare', async () => {
    for (const table of Object.keys(originalTables)) {
      const [{ n }] = await sql.unsafe<Array<{ n: number }>>(`select count(*)::int as n from public."${table}"`)
      before[table] = n
    }
    await sql.unsafe(`
      create schema if not exists legacy_upgrade;
      comment on schema legacy_upgrade is 'Left by the upgrade from the original Express/Prisma database: values that broke a rule of the new schema (quarantine), columns that have no place in it (original_row), and the report of each run. Drop it when nothing in it is needed any more.';
      create table if not exists legacy_upgrade.quarantine (
        quarantine_id bigserial primary key,
        table_name text not null,
        row_id text not null,
        column_name text not null,
        original_value text,
        reason text not null,
        action text not null,
        quarantined_at timestamptz not null default now()
      );
      create table if not exists legacy_upgrade.original_row (
        table_name text not null,
        row_id text not null,
        data jsonb not null,
        primary key (table_name, row_id)
      );
      create table if not exists legacy_upgrade.run (
        run_id serial primary key,
        finished_at timestamptz not null default now(),
        report jsonb not null
      );
      create schema legacy_original;
      ${Object.keys(originalTables).map((t) => `alter table public."${t}" set schema legacy_original;`).join('\n')}
    `)
  })

  await step('tables', async () => {
    for (const statement of createTables) await sql.unsafe(statement)
  })

  await step('rbac', async () => {
    const defaults = JSON.stringify(defaultPermissions.map((p) => ({ codename: p.codename, category: p.category })))
    await sql.unsafe(`
      insert into public.permission (permission_id, name, codename, category, description, created_at, last_updated)
      select p.permission_id, p.name, p.codename,
        coalesce(nullif(btrim(p.category), ''), d.category, 'custom'),
        p.description,
        coalesce(${utc('p.created_at')}, now()),
        coalesce(${utc('p.last_updated')}, ${utc('p.created_at')}, now())
      from legacy_original.permission p
      left join jsonb_to_recordset($1::text::jsonb) as d(codename text, category text) on d.codename = p.codename`, [defaults])
    await sql.unsafe(`
      insert into public."group" (group_id, name, codename, description, is_system, is_active, created_at, last_updated)
      select g.group_id, g.name, g.codename, g.description,
        coalesce(g.is_system, false) or g.codename in (${list(defaultGroups.map((d) => d.codename))}),
        coalesce(g.is_active, true),
        coalesce(${utc('g.created_at')}, now()),
        coalesce(${utc('g.last_updated')}, ${utc('g.created_at')}, now())
      from legacy_original."group" g`)
    await sql.unsafe(`
      insert into public.group_permission (group_id, permission_id, created_at)
      select gp.group_id, gp.permission_id, coalesce(${utc('gp.created_at')}, now())
      from legacy_original.group_permission gp`)
    await sql.unsafe(`
      insert into legacy_upgrade.original_row (table_name, row_id, data)
      select 'group_permission', gp.id::text, to_jsonb(gp) from legacy_original.group_permission gp`)
    mappings.push(...await sql.unsafe<Mapping[]>(`
      select 'permission' as "table", 'category' as "column", p.category as "from", n.category as "to", count(*)::int as rows
      from legacy_original.permission p join public.permission n using (permission_id)
      where p.category is distinct from n.category group by 3, 4
      union all
      select 'group', 'is_system', coalesce(g.is_system::text, 'null'), n.is_system::text, count(*)::int
      from legacy_original."group" g join public."group" n using (group_id)
      where g.is_system is distinct from n.is_system group by 3, 4`))
  })

  await step('users', async () => {
    await stageUsers(sql)
    await mapDistinct(sql, 'phone_text', 'phone_number', 'phone_reason', mapPhone)
    await mapDistinct(sql, 'country_original', 'country', 'country_reason', mapCountry)
    await dedupe(sql, 'email', 'lower(email)', 'is_email_verified', 'email_duplicate_ignoring_case')
    await dedupe(sql, 'user_name', 'lower(user_name)', 'false', 'user_name_duplicate_ignoring_case')
    await dedupe(sql, 'phone_number', 'phone_number', 'is_phone_verified', 'phone_duplicate')
    await quarantineUsers(sql)
    mappings.push(...await userMappings(sql))
    await sql.unsafe(`
      insert into public."user" (user_id, email, phone_number, user_name, password, auth_type, user_type, first_name, last_name,
        bio, country, gender, dob, language, theme, timezone, profile_accessibility, profile_picture_url, profile_picture_key,
        is_email_verified, is_phone_verified, is_active, status, permission_version, password_changed_at, last_login,
        deactivated_at, deleted_at, created_at, last_updated)
      select user_id, email, phone_number, user_name, password, auth_type, user_type, first_name, last_name,
        bio, country, gender, dob, language, theme, timezone, profile_accessibility, profile_picture_url, null,
        is_email_verified and email is not null, is_phone_verified and phone_number is not null, status = 'active', status, 0, null, last_login,
        null, null, created_at, last_updated
      from upgrade_user`)
    // Everything the new row does not carry (is_protected, invited_by_user_id,
    // verification times, the original spellings...), minus the password hash:
    // the live one is in "user" and must not outlive a re-hash elsewhere.
    await sql.unsafe(`
      insert into legacy_upgrade.original_row (table_name, row_id, data)
      select 'user', u.user_id::text, to_jsonb(u) - 'password' from legacy_original."user" u`)
  })

  await step('memberships', async () => {
    await sql.unsafe(`
      insert into public.user_group (user_id, group_id, created_at)
      select ug.user_id, ug.group_id, coalesce(${utc('ug.assigned_at')}, now())
      from legacy_original.user_group ug`)
    await sql.unsafe(`
      insert into legacy_upgrade.original_row (table_name, row_id, data)
      select 'user_group', ug.id::text, to_jsonb(ug) from legacy_original.user_group ug`)
  })

  await step('activity_log', async () => {
    // One scan for everything the report says about the log, per original level.
    const stats = await sql.unsafe<Array<{ level: string, mapped: string, known: boolean, rows: number, session_ids: number, platforms: number, error_details: number, no_action: number, no_module: number }>>(`
      select a.level, ${levelExpression} as mapped, ${levelKnown} as known, count(*)::int as rows,
        count(*) filter (where a.session_id !~ '${uuidPattern}')::int as session_ids,
        count(a.platform)::int as platforms, count(a.error_details)::int as error_details,
        count(*) filter (where a.action is null)::int as no_action, count(*) filter (where a.module is null)::int as no_module
      from legacy_original.activity_log a group by a.level order by count(*) desc`)
    const sum = (key: 'session_ids' | 'platforms' | 'error_details' | 'no_action' | 'no_module') => stats.reduce((n, s) => n + s[key], 0)
    mappings.push(
      ...stats.filter((s) => s.known && s.level !== s.mapped).map((s) => ({ table: 'activity_log', column: 'level', from: s.level, to: s.mapped, rows: s.rows })),
      { table: 'activity_log', column: 'session_id', from: 'not a UUID', to: 'metadata.legacy_columns.session_id', rows: sum('session_ids') },
      { table: 'activity_log', column: 'platform', from: 'any value', to: 'metadata.legacy_columns.platform', rows: sum('platforms') },
      { table: 'activity_log', column: 'error_details', from: 'any value', to: 'metadata.legacy_columns.error_details', rows: sum('error_details') },
      { table: 'activity_log', column: 'action', from: null, to: 'unknown', rows: sum('no_action') },
      { table: 'activity_log', column: 'module', from: null, to: 'unknown', rows: sum('no_module') })
    if (stats.some((s) => !s.known)) {
      await sql.unsafe(`
        insert into legacy_upgrade.quarantine (table_name, row_id, column_name, original_value, reason, action)
        select 'activity_log', a.log_id::text, 'level', a.level, 'level_unknown', 'set to ''info''; the original is in metadata.legacy_columns.level'
        from legacy_original.activity_log a where not (${levelKnown})`)
    }
    // Random UUIDs inserted one by one into the primary key's b-tree cost more
    // than the copy itself; the key is built once afterwards instead, under the
    // same name and definition (step "constraints").
    await sql.unsafe('alter table public.activity_log drop constraint activity_log_pkey')
    // One pass in the database. Columns without a place of their own (platform,
    // error_details, a session id that is not a UUID, an unknown level) go into
    // metadata.legacy_columns; a metadata value that is not an object is kept
    // under metadata.value.
    await sql.unsafe(`
      insert into public.activity_log (log_id, user_id, level, action, module, message, ip_address, user_agent, device, browser, os,
        endpoint, method, status_code, request_id, session_id, target_user_id, duration_ms, metadata, created_at)
      select a.log_id, a.user_id, ${levelExpression},
        coalesce(a.action, 'unknown'), coalesce(a.module, 'unknown'), a.message, a.ip_address, a.user_agent, a.device, a.browser, a.os,
        a.endpoint, a.method, a.status_code, a.request_id,
        case when a.session_id ~ '${uuidPattern}' then a.session_id::uuid end,
        null, a.duration_ms,
        case when (a.metadata is null or jsonb_typeof(a.metadata) = 'null') and l.extra = '{}'::jsonb then null
          else (case when a.metadata is null or jsonb_typeof(a.metadata) = 'null' then '{}'::jsonb
                     when jsonb_typeof(a.metadata) = 'object' then a.metadata
                     else jsonb_build_object('value', a.metadata) end)
            || case when l.extra = '{}'::jsonb then '{}'::jsonb else jsonb_build_object('legacy_columns', l.extra) end
        end,
        ${utc('a.created_at')}
      from legacy_original.activity_log a
      cross join lateral (select
          case when a.platform is null then '{}'::jsonb else jsonb_build_object('platform', a.platform) end
          || case when a.error_details is null then '{}'::jsonb else jsonb_build_object('error_details', a.error_details) end
          || case when a.session_id is null or a.session_id ~ '${uuidPattern}' then '{}'::jsonb else jsonb_build_object('session_id', a.session_id) end
          || case when ${levelKnown} then '{}'::jsonb else jsonb_build_object('level', a.level) end
          || case when a.action is null then jsonb_build_object('action', null) else '{}'::jsonb end
          || case when a.module is null then jsonb_build_object('module', null) else '{}'::jsonb end
        as extra) l`)
  })

  await step('constraints', async () => {
    // Index builds sort in memory up to this much (this transaction only).
    await sql`select set_config('maintenance_work_mem', '256MB', true)`
    await sql.unsafe('alter table public.activity_log add constraint activity_log_pkey primary key (log_id)')
    for (const statement of afterData) await sql.unsafe(statement)
  })

  let report: UpgradeReport | undefined
  await step('finish', async () => {
    try {
      for (const table of ['activity_log', 'user_group', 'group_permission', 'user', 'group', 'permission']) {
        await sql.unsafe(`drop table legacy_original."${table}"`)
      }
      await sql.unsafe('drop schema legacy_original')
    } catch (error) {
      // 2BP01: a view, function or table of the operator's depends on an original table.
      if ((error as { code?: string }).code === '2BP01') {
        throw new Error(`upgrade: something of yours depends on an original table, so it cannot be replaced: ${(error as Error).message}. ` +
          'Drop or change it (recreate it after the upgrade) and run again; nothing was changed.')
      }
      throw error
    }
    // Exactly what drizzle-orm's migrator creates and writes for an applied migration.
    await sql.unsafe(`
      create schema if not exists drizzle;
      create table if not exists drizzle.__drizzle_migrations (
        id SERIAL PRIMARY KEY,
        hash text NOT NULL,
        created_at bigint
      )`)
    await sql`insert into drizzle.__drizzle_migrations ("hash", "created_at") values (${baseline.hash}, ${baseline.folderMillis})`
    report = await buildReport(sql, before, mappings, timings, options.dryRun === true)
    await sql`insert into legacy_upgrade.run (report) values (${JSON.stringify(report)}::text::jsonb)`
  })
  report!.timings = timings
  return report!
}

async function buildReport (sql: postgres.TransactionSql, before: Record<string, number>, mappings: Mapping[],
  timings: UpgradeReport['timings'], dryRun: boolean): Promise<UpgradeReport> {
  const tables: TableCount[] = []
  for (const table of Object.keys(originalTables)) {
    const [{ n }] = await sql.unsafe<Array<{ n: number }>>(`select count(*)::int as n from public."${table}"`)
    const [{ q }] = await sql<Array<{ q: number }>>`
      select count(distinct row_id)::int as q from legacy_upgrade.quarantine where table_name = ${table} and quarantined_at = now()`
    tables.push({ table, before: before[table], after: n, quarantined: q })
  }
  const counts = await sql<Array<{ reason: string, n: number }>>`
    select reason, count(*)::int as n from legacy_upgrade.quarantine where quarantined_at = now() group by reason order by reason`
  const conflicts = await sql<Conflict[]>`
    select table_name as "table", row_id as "rowId", column_name as "column", original_value as "value", reason, action from (
      select q.*, row_number() over (partition by reason order by quarantine_id) as n
      from legacy_upgrade.quarantine q where quarantined_at = now()
    ) q where n <= ${CONFLICT_LIMIT} order by table_name, reason, quarantine_id`
  return {
    dryRun,
    tables,
    mappings: mappings.filter((m) => m.rows > 0),
    conflicts: [...conflicts],
    conflictCounts: Object.fromEntries(counts.map((c) => [c.reason, c.n])),
    conflictLimit: CONFLICT_LIMIT,
    timings
  }
}
