import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import postgres from 'postgres'
import { Redis } from 'ioredis'
import { openDatabase, type DatabaseHandle } from '../../db/client.ts'
import { migrateDatabase } from '../../db/migrate.ts'
import { seedDatabase } from '../../db/seed.ts'

/**
 * Where the bench keeps its data. PostgreSQL + Redis on loopback when they
 * answer (a scratch database `bench_<time>_<random>` created and dropped by the
 * bench, a Redis key prefix of its own, deleted afterwards); the embedded
 * defaults (PGlite in a temporary DATA_DIR, in-process store) otherwise, or
 * when `BENCH_STACK=embedded`. The bench never connects beyond 127.0.0.1.
 */
export interface Stack {
  /** e.g. "PostgreSQL 16.4 + Redis 7.0.15" or "embedded PGlite + in-process store" */
  label: string
  /** The scratch database and key prefix of this run, for the log. */
  scratch: string
  postgres: boolean
  redis: boolean
  /** Environment of every API process of this run. */
  env: Record<string, string>
  /** Opens the bench's database the way the app does (migrated, default data); the caller closes it. */
  open: () => Promise<DatabaseHandle>
  /** Drops the scratch database, deletes the Redis keys and the data folder; idempotent. */
  dispose: () => Promise<void>
}

const DEFAULT_POSTGRES_URL = 'postgres://postgres@127.0.0.1:5432/postgres'
const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379'
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]', '::1'])
const BENCH_DATABASE = /^bench_([a-z0-9]+)_[0-9a-f]+$/
const STALE_AFTER_MS = 60 * 60 * 1000

function loopbackUrl (raw: string, what: string): URL {
  const url = new URL(raw)
  if (!LOOPBACK.has(url.hostname)) throw new Error(`${what}: the bench connects only to 127.0.0.1 (got host ${url.hostname})`)
  return url
}

function adminClient (url: string): postgres.Sql {
  return postgres(url, { max: 1, connect_timeout: 3, idle_timeout: 1, onnotice: () => {} })
}

/** The server's version when PostgreSQL answers at `url`, else undefined. */
async function postgresVersion (url: string): Promise<string | undefined> {
  const sql = adminClient(url)
  try {
    const [row] = await sql<Array<{ version: string }>>`select current_setting('server_version') as version`
    return row.version.split(' ')[0]
  } catch {
    return undefined
  } finally {
    await sql.end({ timeout: 2 }).catch(() => {})
  }
}

/** The server's version when Redis answers PING at `url`, else undefined. */
async function redisVersion (url: string): Promise<string | undefined> {
  const redis = new Redis(url, { lazyConnect: true, connectTimeout: 1000, maxRetriesPerRequest: 0, retryStrategy: () => null })
  redis.on('error', () => {})
  try {
    await redis.connect()
    const info = await redis.info('server')
    return /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown'
  } catch {
    return undefined
  } finally {
    redis.disconnect()
  }
}

/** Drops bench databases that crashed runs left behind (their name carries the creation time). */
async function dropStaleBenchDatabases (sql: postgres.Sql): Promise<void> {
  const rows = await sql<Array<{ datname: string }>>`select datname from pg_database where datname like 'bench\\_%'`
  for (const { datname } of rows) {
    const match = BENCH_DATABASE.exec(datname)
    if (match && Date.now() - parseInt(match[1], 36) * 1000 > STALE_AFTER_MS) {
      await sql.unsafe(`drop database if exists "${datname}" with (force)`)
    }
  }
}

/** Deletes the keys under `prefix` (a bench run's own) from the Redis server at `url`. */
export async function deleteRedisKeys (url: string, prefix: string): Promise<void> {
  const redis = new Redis(url, { lazyConnect: true, connectTimeout: 2000, maxRetriesPerRequest: 1, retryStrategy: () => null })
  redis.on('error', () => {})
  try {
    await redis.connect()
    let cursor = '0'
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
      if (keys.length > 0) await redis.unlink(...keys)
      cursor = next
    } while (cursor !== '0')
  } finally {
    redis.disconnect()
  }
}

/** Opens a database through db/client.ts, applies the migrations and default data like the server does at start. */
async function openMigrated (url: string | undefined, dataDir: string): Promise<DatabaseHandle> {
  const handle = await openDatabase({ url, dataDir, poolMax: 2 })
  try {
    await migrateDatabase(handle)
    await seedDatabase(handle.db)
    return handle
  } catch (error) {
    await handle.close()
    throw error
  }
}

export async function selectStack (opts: { embedded: boolean }): Promise<Stack> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'bench-'))
  const stamp = `${Math.floor(Date.now() / 1000).toString(36)}_${randomBytes(4).toString('hex')}`
  const cleanups: Array<() => Promise<void>> = [async () => rmSync(dataDir, { recursive: true, force: true })]
  // An empty value keeps a .env file (loaded by server.ts) from choosing the stack behind our back.
  const env: Record<string, string> = { DATA_DIR: dataDir, DATABASE_URL: '', REDIS_URL: '', REDIS_KEY_PREFIX: '' }
  const parts: string[] = []
  const scratch: string[] = []
  let databaseUrl: string | undefined

  if (!opts.embedded) {
    const serverUrl = loopbackUrl(process.env.BENCH_DATABASE_URL ?? process.env.DATABASE_URL ?? DEFAULT_POSTGRES_URL, 'BENCH_DATABASE_URL')
    const version = await postgresVersion(serverUrl.toString())
    if (version) {
      const name = `bench_${stamp}`
      const admin = adminClient(serverUrl.toString())
      try {
        await dropStaleBenchDatabases(admin)
        await admin.unsafe(`create database "${name}"`)
      } finally {
        await admin.end({ timeout: 2 })
      }
      cleanups.push(async () => {
        const dropper = adminClient(serverUrl.toString())
        try {
          await dropper.unsafe(`drop database if exists "${name}" with (force)`)
        } finally {
          await dropper.end({ timeout: 2 })
        }
      })
      const url = new URL(serverUrl)
      url.pathname = `/${name}`
      databaseUrl = url.toString()
      env.DATABASE_URL = databaseUrl
      parts.push(`PostgreSQL ${version}`)
      scratch.push(`database ${name}`)
    }

    const redisUrl = loopbackUrl(process.env.BENCH_REDIS_URL ?? process.env.REDIS_URL ?? DEFAULT_REDIS_URL, 'BENCH_REDIS_URL').toString()
    const redis = await redisVersion(redisUrl)
    if (redis) {
      const prefix = `bench:${stamp}:`
      env.REDIS_URL = redisUrl
      env.REDIS_KEY_PREFIX = prefix
      cleanups.push(() => deleteRedisKeys(redisUrl, prefix))
      parts.push(`Redis ${redis}`)
      scratch.push(`Redis key prefix ${prefix}`)
    }
  }

  const postgresInUse = databaseUrl !== undefined
  const redisInUse = env.REDIS_URL !== ''
  if (!postgresInUse) parts.unshift('embedded PGlite')
  if (!redisInUse) parts.push('in-process store')

  let disposed: Promise<void> | undefined
  return {
    label: parts.join(' + '),
    scratch: scratch.length > 0 ? scratch.join(', ') : `data folder ${dataDir}`,
    postgres: postgresInUse,
    redis: redisInUse,
    env,
    open: () => openMigrated(databaseUrl, dataDir),
    dispose: () => (disposed ??= (async () => {
      for (const cleanup of cleanups.reverse()) await cleanup().catch((error: unknown) => console.error(`bench cleanup: ${String(error)}`))
    })())
  }
}
