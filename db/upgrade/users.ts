import type postgres from 'postgres'
import { authTypes, profileAccessibilities, themes, userTypes } from '../schema/users.ts'
import type { Mapped } from './normalize.ts'
import type { Mapping } from './upgrade.ts'

/**
 * Step 4 of the upgrade (upgrade.ts): the original users staged in a temporary
 * table, mapped to this project's rules, and the values that break one set
 * aside in `legacy_upgrade.quarantine`.
 */

/** An SQL string literal of a constant of this file (never of data). */
export const literal = (value: string) => `'${value.replace(/'/g, "''")}'`
export const list = (values: readonly string[]) => values.map(literal).join(', ')

/** Reads a naive-UTC `timestamp` of the original as the instant it names. */
export const utc = (column: string) => `(${column} at time zone 'UTC')`

/**
 * The users as they will be inserted, with their original values beside and a
 * reason column per rule that a value can break.
 */
export async function stageUsers (sql: postgres.TransactionSql): Promise<void> {
  await sql.unsafe(`
    create temp table upgrade_user on commit drop as
    select u.user_id,
      u.email as email_original, nullif(btrim(u.email), '') as email, null::text as email_reason, null::uuid as email_keeper,
      u.user_name as user_name_original, nullif(btrim(u.user_name), '') as user_name, null::text as user_name_reason, null::uuid as user_name_keeper,
      u.phone_number::text as phone_original,
      case
        when u.phone_number is null or jsonb_typeof(u.phone_number) = 'null' then null
        when jsonb_typeof(u.phone_number) = 'object' and jsonb_typeof(u.phone_number -> 'phone') in ('string', 'number') then u.phone_number ->> 'phone'
        when jsonb_typeof(u.phone_number) = 'object' and (u.phone_number - 'phone') = '{}'::jsonb then null
        when jsonb_typeof(u.phone_number) in ('string', 'number') then u.phone_number #>> '{}'
        else u.phone_number::text
      end as phone_text,
      null::text as phone_number, null::text as phone_reason, null::uuid as phone_number_keeper,
      u.country as country_original, null::text as country, null::text as country_reason,
      u.password,
      u.auth_type as auth_type_original,
      case
        when lower(btrim(u.auth_type)) in (${list(authTypes)}) then lower(btrim(u.auth_type))
        when nullif(btrim(u.email), '') is not null then 'email'
        when u.phone_number is not null and jsonb_typeof(u.phone_number) <> 'null' then 'phone'
        else 'user_name'
      end as auth_type,
      case when nullif(btrim(u.auth_type), '') is null or lower(btrim(u.auth_type)) in (${list(authTypes)}) then null else 'auth_type_unknown' end as auth_type_reason,
      u.user_type as user_type_original,
      case when lower(btrim(u.user_type)) in (${list(userTypes)}) then lower(btrim(u.user_type)) else 'user' end as user_type,
      case when nullif(btrim(u.user_type), '') is null or lower(btrim(u.user_type)) in (${list([...userTypes, 'customer'])}) then null else 'user_type_unknown' end as user_type_reason,
      u.first_name, u.last_name, u.bio, u.gender, u.profile_picture_url,
      u.dob as dob_original, u.dob::date as dob,
      u.language as language_original, coalesce(lower(nullif(btrim(u.language), '')), 'en') as language,
      u.theme as theme_original,
      case when lower(btrim(u.theme)) in (${list(themes)}) then lower(btrim(u.theme)) else 'system' end as theme,
      case when nullif(btrim(u.theme), '') is null or lower(btrim(u.theme)) in (${list(themes)}) then null else 'theme_unknown' end as theme_reason,
      u.profile_accessibility as profile_accessibility_original,
      case when lower(btrim(u.profile_accessibility)) in (${list(profileAccessibilities)}) then lower(btrim(u.profile_accessibility))
        when nullif(btrim(u.profile_accessibility), '') is null then 'public' else 'private' end as profile_accessibility,
      case when nullif(btrim(u.profile_accessibility), '') is null or lower(btrim(u.profile_accessibility)) in (${list(profileAccessibilities)}) then null
        else 'profile_accessibility_unknown' end as profile_accessibility_reason,
      u.timezone as timezone_original,
      case when nullif(btrim(u.timezone), '') is null then 'UTC' when tz.name is not null then tz.name else 'UTC' end as timezone,
      case when nullif(btrim(u.timezone), '') is not null and tz.name is null then 'timezone_unknown' end as timezone_reason,
      u.status as status_original, u.is_active as is_active_original, u.is_trashed as is_trashed_original,
      case
        when coalesce(u.is_trashed, false) then 'deleted'
        when lower(btrim(u.status)) = 'deleted' then 'deleted'
        when lower(btrim(u.status)) = 'active' and u.is_active is distinct from false then 'active'
        when lower(btrim(u.status)) in ('active', 'inactive') then 'inactive'
        when nullif(btrim(u.status), '') is null and u.is_active then 'active'
        else 'inactive'
      end as status,
      case
        when coalesce(u.is_trashed, false) or lower(btrim(u.status)) = 'deleted' then null
        when lower(btrim(u.status)) in ('active', 'inactive') then
          case when u.is_active is not null and u.is_active <> (lower(btrim(u.status)) = 'active') then 'status_disagrees_with_is_active' end
        when nullif(btrim(u.status), '') is null then case when u.is_active is null then 'status_missing' end
        else 'status_unknown'
      end as status_reason,
      coalesce(u.is_email_verified, false) as is_email_verified,
      coalesce(u.is_phone_verified, false) as is_phone_verified,
      ${utc('u.last_sign_in_at')} as last_login,
      coalesce(${utc('u.created_at')}, ${utc('u.last_updated')}, now()) as created_at,
      coalesce(${utc('u.last_updated')}, ${utc('u.created_at')}, now()) as last_updated
    from legacy_original."user" u
    left join (select distinct name from pg_timezone_names) tz on tz.name = btrim(u.timezone)`)
}

/**
 * Maps a column through `map` once per distinct value (in the application:
 * numbering plans and country names), and joins the answers back in SQL.
 */
export async function mapDistinct (sql: postgres.TransactionSql, source: string, target: string, reasonColumn: string, map: (raw: string) => Mapped): Promise<void> {
  const values = await sql.unsafe<Array<{ raw: string }>>(`select distinct ${source} as raw from upgrade_user where ${source} is not null`)
  if (values.length === 0) return
  const answers = values.map(({ raw }) => ({ raw, ...map(raw) }))
  await sql.unsafe(`
    update upgrade_user u set ${target} = m.value, ${reasonColumn} = m.reason
    from jsonb_to_recordset($1::text::jsonb) as m(raw text, value text, reason text)
    where m.raw = u.${source}`, [JSON.stringify(answers)])
}

/**
 * A value that must be unique (ignoring case where the app looks it up so)
 * stays on one account: the active one, then the verified one, then the one
 * signed in most recently, then the oldest. The others lose it (quarantined).
 */
export async function dedupe (sql: postgres.TransactionSql, column: string, key: string, verified: string, reason: string): Promise<void> {
  await sql.unsafe(`
    with ranked as (
      select user_id,
        row_number() over w as rank,
        first_value(user_id) over w as keeper
      from upgrade_user where ${column} is not null
      window w as (partition by ${key} order by (status = 'active') desc, ${verified} desc, last_login desc nulls last, created_at, user_id)
    )
    update upgrade_user u set ${column} = null, ${column === 'phone_number' ? 'phone_reason' : `${column}_reason`} = '${reason}', ${column}_keeper = r.keeper
    from ranked r where r.user_id = u.user_id and r.rank > 1`)
}

export async function quarantineUsers (sql: postgres.TransactionSql): Promise<void> {
  // action: an SQL expression over the staged row saying what was done.
  const rules: Array<[column: string, original: string, reasonColumn: string, action: string]> = [
    ['email', 'email_original', 'email_reason', `${literal('set to NULL; the address stays on user ')} || email_keeper`],
    ['user_name', 'user_name_original', 'user_name_reason', `${literal('set to NULL; the name stays on user ')} || user_name_keeper`],
    ['phone_number', 'phone_original', 'phone_reason',
      `${literal('set to NULL')} || coalesce(${literal('; the number stays on user ')} || phone_number_keeper, '')`],
    ['country', 'country_original', 'country_reason', literal('set to NULL')],
    ['auth_type', 'auth_type_original', 'auth_type_reason', `${literal("set to '")} || auth_type || ${literal("' (from the identifiers the account has)")}`],
    ['user_type', 'user_type_original', 'user_type_reason', literal("set to 'user' (groups, not user_type, grant permissions)")],
    ['theme', 'theme_original', 'theme_reason', literal("set to 'system'")],
    ['profile_accessibility', 'profile_accessibility_original', 'profile_accessibility_reason', literal("set to 'private' (the safe choice)")],
    ['timezone', 'timezone_original', 'timezone_reason', literal("set to 'UTC'")],
    ['status', `${literal('status=')} || coalesce(status_original, 'NULL') || ${literal(', is_active=')} || coalesce(is_active_original::text, 'NULL')`, 'status_reason',
      `${literal("set to '")} || status || ${literal("' (an account is active only when both said so)")}`]
  ]
  for (const [column, original, reasonColumn, action] of rules) {
    await sql.unsafe(`
      insert into legacy_upgrade.quarantine (table_name, row_id, column_name, original_value, reason, action)
      select 'user', user_id::text, '${column}', ${original}, ${reasonColumn}, ${action}
      from upgrade_user where ${reasonColumn} is not null order by user_id`)
  }
}

/** What changed with certainty, value by value (e.g. status 'ACTIVE' -> 'active': 12 rows). */
export async function userMappings (sql: postgres.TransactionSql): Promise<Mapping[]> {
  const columns: Array<[column: string, original: string, mapped: string, reasonColumn: string | null]> = [
    ['status', `coalesce(status_original, 'NULL') || case when is_trashed_original then ${literal(' (trashed)')} else '' end`, 'status', 'status_reason'],
    ['user_type', 'user_type_original', 'user_type', 'user_type_reason'],
    ['auth_type', 'auth_type_original', 'auth_type', 'auth_type_reason'],
    ['theme', 'theme_original', 'theme', 'theme_reason'],
    ['profile_accessibility', 'profile_accessibility_original', 'profile_accessibility', 'profile_accessibility_reason'],
    ['timezone', 'timezone_original', 'timezone', 'timezone_reason'],
    ['language', 'language_original', 'language', null],
    ['country', 'country_original', 'country', 'country_reason'],
    ['email', 'email_original', 'email', 'email_reason'],
    ['user_name', 'user_name_original', 'user_name', 'user_name_reason']
  ]
  const parts = columns.map(([column, original, mapped, reasonColumn]) => `
    select 'user' as "table", '${column}' as "column", ${original} as "from", ${mapped} as "to", count(*)::int as rows
    from upgrade_user where ${original} is distinct from ${mapped}${reasonColumn ? ` and ${reasonColumn} is null` : ''} group by 3, 4`)
  // Phones: how many were rewritten (a `+` added, formatting removed), not each number.
  parts.push(`
    select 'user', 'phone_number', 'digits without +', 'E.164', count(*)::int from upgrade_user
    where phone_reason is null and phone_number is not null and phone_text !~ '^\\+' group by 3, 4
    union all
    select 'user', 'phone_number', 'with formatting', 'E.164', count(*)::int from upgrade_user
    where phone_reason is null and phone_number is not null and phone_text ~ '^\\+' and phone_text <> phone_number group by 3, 4`)
  return sql.unsafe<Mapping[]>(`${parts.join(' union all ')} order by 1, 2, 5 desc, 3`)
}
