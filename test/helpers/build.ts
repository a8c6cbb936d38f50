import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { randomBytes } from 'node:crypto'
import { Redis } from 'ioredis'
import type { FastifyInstance } from 'fastify'
import { buildApp, type AppDeps } from '../../app.ts'
import { loadConfig } from '../../config.ts'
import { createTestDatabase } from './database.ts'

/** Which stack the suite runs on: real PostgreSQL + Redis (default), or the embedded defaults. */
export const stack = process.env.TEST_DB === 'embedded' ? 'embedded' : 'postgres'
export const testRedisUrl = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
export const testSecret = 'test-secret-of-at-least-thirty-two-characters'

interface Teardown { teardown: (fn: () => unknown) => void }

export interface TestContext {
  app: FastifyInstance
  prefix: string
  env: Record<string, string>
  /** Builds another instance on the same database and cache (a second server of a cluster). */
  another: (env?: Record<string, string>, deps?: AppDeps) => Promise<FastifyInstance>
}

/**
 * Builds the app on a database of its own (cloned from the migrated template)
 * and, on the postgres stack, a Redis key prefix of its own, so test files run
 * in parallel. Everything is closed and dropped at teardown.
 */
export async function build (t: Teardown, env: Record<string, string> = {}, deps: AppDeps = {}): Promise<FastifyInstance> {
  return (await buildContext(t, env, deps)).app
}

export async function buildContext (t: Teardown, env: Record<string, string> = {}, deps: AppDeps = {}): Promise<TestContext> {
  const database = await createTestDatabase()
  const prefix = `test:${randomBytes(6).toString('hex')}:`
  const dataDir = mkdtempSync(path.join(tmpdir(), 'api-test-'))
  const baseEnv: Record<string, string> = {
    NODE_ENV: 'test',
    LOG_LEVEL: 'silent',
    JWT_SECRET_KEY: testSecret,
    DATA_DIR: dataDir,
    REDIS_KEY_PREFIX: prefix,
    METRICS_ENABLED: 'false',
    // A loaded CI machine can be slow to fork a backend; outages in tests are refusals, not timeouts.
    DB_CONNECT_TIMEOUT_SECONDS: '30',
    REDIS_COMMAND_TIMEOUT_MS: '10000',
    LOAD_SHED_EVENT_LOOP_DELAY_MS: '0',
    // The relying party production requires (passkeys): the development default, stated.
    WEBAUTHN_RP_ID: 'localhost',
    WEBAUTHN_ORIGINS: 'http://localhost:3000',
    ...(database.url ? { DATABASE_URL: database.url, DB_POOL_MAX: '3' } : {}),
    ...(stack === 'postgres' ? { REDIS_URL: testRedisUrl } : {}),
    ...env
  }
  const apps: FastifyInstance[] = []
  const make = async (extraEnv: Record<string, string> = {}, extraDeps: AppDeps = {}) => {
    const app = await buildApp(loadConfig({ ...baseEnv, ...extraEnv }), { pglite: database.pglite, ...deps, ...extraDeps })
    apps.push(app)
    return app
  }
  t.teardown(async () => {
    await Promise.all(apps.map((a) => a.close()))
    await database.drop()
    if (stack === 'postgres') await deleteRedisPrefix(prefix)
    rmSync(dataDir, { recursive: true, force: true })
  })
  const app = await make()
  return { app, prefix, env: baseEnv, another: make }
}

export async function deleteRedisPrefix (prefix: string) {
  const redis = new Redis(testRedisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 })
  try {
    await redis.connect()
    let cursor = '0'
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500)
      cursor = next
      if (keys.length > 0) await redis.del(...keys)
    } while (cursor !== '0')
  } finally {
    redis.disconnect()
  }
}
