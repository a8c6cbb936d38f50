import { inArray } from 'drizzle-orm'
import { loadConfig } from '../config.ts'
import { errorMessage, isMainModule, loadDotenv, reportHeldFolder } from './cli.ts'
import { openDatabase, type Database, type DatabaseHandle } from './client.ts'
import { defaultGroups, defaultPermissions } from './defaults.ts'
import { appliedState, migrateDatabase } from './migrate.ts'
import { DataDirLockedError } from './pglite-lock.ts'
import { group, groupPermission, permission } from './schema/index.ts'

export interface SeedResult {
  permissionsCreated: string[]
  groupsCreated: string[]
  grantsCreated: number
}

/**
 * Inserts the default permissions and system groups that are missing; runs at
 * every start, so it must be cheap and must never undo an administrator:
 * - an existing permission or group is left as it is (names included);
 * - a group gets its default permissions only when it is created here;
 * - a permission created here (new in this release, so nobody can have revoked
 *   it yet) is granted to the existing default groups that list it.
 * One transaction: a crash leaves either all of it or none (SR-43). Two
 * instances seeding at once are fine: the second waits on the unique indexes
 * and then finds every row present.
 */
export async function seedDatabase (db: Database): Promise<SeedResult> {
  return db.transaction(async (tx) => {
    const newPermissions = await tx.insert(permission)
      .values(defaultPermissions.map((p) => ({ codename: p.codename, name: p.name, category: p.category, description: p.description })))
      .onConflictDoNothing()
      .returning({ codename: permission.codename })
    const newGroups = await tx.insert(group)
      .values(defaultGroups.map((g) => ({ codename: g.codename, name: g.name, description: g.description, is_system: true })))
      .onConflictDoNothing()
      .returning({ codename: group.codename })

    const createdPermissions = new Set<string>(newPermissions.map((p) => p.codename))
    const createdGroups = new Set<string>(newGroups.map((g) => g.codename))
    const wanted = defaultGroups.flatMap((g) => g.permissions
      .filter((codename) => createdGroups.has(g.codename) || createdPermissions.has(codename))
      .map((codename) => ({ group: g.codename as string, permission: codename as string })))

    let grantsCreated = 0
    if (wanted.length > 0) {
      const groupRows = await tx.select({ id: group.group_id, codename: group.codename }).from(group)
        .where(inArray(group.codename, [...new Set(wanted.map((w) => w.group))]))
      const permissionRows = await tx.select({ id: permission.permission_id, codename: permission.codename }).from(permission)
        .where(inArray(permission.codename, [...new Set(wanted.map((w) => w.permission))]))
      const groupIds = new Map(groupRows.map((r) => [r.codename, r.id]))
      const permissionIds = new Map(permissionRows.map((r) => [r.codename, r.id]))
      const grants = wanted.flatMap((w) => {
        const groupId = groupIds.get(w.group)
        const permissionId = permissionIds.get(w.permission)
        return groupId && permissionId ? [{ group_id: groupId, permission_id: permissionId }] : []
      })
      if (grants.length > 0) {
        const inserted = await tx.insert(groupPermission).values(grants).onConflictDoNothing()
          .returning({ group_id: groupPermission.group_id })
        grantsCreated = inserted.length
      }
    }
    return { permissionsCreated: [...createdPermissions], groupsCreated: [...createdGroups], grantsCreated }
  })
}

async function main (): Promise<void> {
  await loadDotenv()
  const config = loadConfig()
  let handle: DatabaseHandle
  try {
    handle = await openDatabase({ url: config.DATABASE_URL, dataDir: config.DATA_DIR, poolMax: 2 })
  } catch (error) {
    if (!(error instanceof DataDirLockedError)) throw error
    const report = reportHeldFolder('seed', error, appliedState())
    if (report.out) console.log(report.out)
    if (report.err) console.error(report.err)
    process.exitCode = report.code
    return
  }
  try {
    // Seeding needs the tables; migrating first is idempotent and makes
    // `npm run db:seed` work on a fresh database too.
    await migrateDatabase(handle)
    const result = await seedDatabase(handle.db)
    console.log(`seed: ${result.permissionsCreated.length} permissions, ${result.groupsCreated.length} groups, ${result.grantsCreated} grants created (${handle.driver})`)
  } finally {
    await handle.close()
  }
}

if (isMainModule(import.meta.url)) {
  main().catch((error: unknown) => {
    console.error(`seed failed: ${errorMessage(error)}`)
    process.exitCode = 1
  })
}
