import type { UpgradeReport } from './upgrade.ts'

const show = (value: string | null) => (value === null ? 'NULL' : JSON.stringify(value))

/** The report as the migrate command prints it: plain text, one fact per line. */
export function formatReport (report: UpgradeReport): string {
  const lines: string[] = []
  lines.push(report.dryRun
    ? 'Original Express/Prisma database found. DRY RUN: this is what the upgrade would do; nothing was changed.'
    : 'Original Express/Prisma database found and upgraded in place (one transaction).')
  lines.push('', 'Rows per table (before -> after, rows with a quarantined value):')
  for (const t of report.tables) {
    lines.push(`  ${t.table.padEnd(17)} ${String(t.before).padStart(9)} -> ${String(t.after).padStart(9)}   quarantined: ${t.quarantined}`)
  }
  lines.push('', 'Values mapped with certainty:')
  if (report.mappings.length === 0) lines.push('  none')
  for (const m of report.mappings) {
    lines.push(`  ${m.table}.${m.column}: ${show(m.from)} -> ${show(m.to)}  (${m.rows} row${m.rows === 1 ? '' : 's'})`)
  }
  const total = Object.values(report.conflictCounts).reduce((a, b) => a + b, 0)
  lines.push('', `Conflicts set aside in legacy_upgrade.quarantine: ${total}`)
  for (const [reason, count] of Object.entries(report.conflictCounts)) lines.push(`  ${reason}: ${count}`)
  for (const c of report.conflicts) {
    lines.push(`  - ${c.table} ${c.rowId} ${c.column} = ${show(c.value)}: ${c.reason}; ${c.action}`)
  }
  for (const [reason, count] of Object.entries(report.conflictCounts)) {
    if (count > report.conflictLimit) {
      lines.push(`  ... and ${count - report.conflictLimit} more ${reason} (all of them are in legacy_upgrade.quarantine after a real run)`)
    }
  }
  lines.push('', 'Columns without a place in the new schema are kept in legacy_upgrade.original_row (users, links) and in activity_log.metadata.legacy_columns.')
  lines.push(`Time per step (ms): ${Object.entries(report.timings).map(([step, ms]) => `${step} ${ms}`).join(', ')}`)
  return lines.join('\n')
}
