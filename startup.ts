import { createRequire } from 'node:module'
import path from 'node:path'
import type { LoggerOptions } from 'pino'
import { apiPrefix, type AppConfig } from './config.ts'

/**
 * pino-pretty when a person reads the logs: stdout is a terminal and this is not
 * production. pino-pretty is a devDependency, absent from production installs, so
 * it is used only when it resolves; otherwise the logs stay JSON.
 */
export function prettyTransport (config: AppConfig, isTTY = process.stdout.isTTY === true): Pick<LoggerOptions, 'transport'> {
  if (config.NODE_ENV === 'production' || !isTTY) return {}
  try {
    createRequire(import.meta.url).resolve('pino-pretty')
  } catch {
    return {}
  }
  return { transport: { target: 'pino-pretty', options: { translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname' } } }
}

/** The lines printed once listening in development: where things are, and how to get an admin. */
export function banner (config: AppConfig, port: number): string {
  const host = config.HOST === '0.0.0.0' || config.HOST === '::' ? 'localhost' : config.HOST
  const base = `http://${host}:${port}`
  const admin = config.BOOTSTRAP_ADMIN_EMAIL
    ? `${config.BOOTSTRAP_ADMIN_EMAIL} (BOOTSTRAP_ADMIN_EMAIL)`
    : 'set BOOTSTRAP_ADMIN_EMAIL and BOOTSTRAP_ADMIN_PASSWORD in .env and restart' +
      (config.DATABASE_URL ? ', or run `npm run create-admin -- --email you@example.com`' : ' (or stop the server and run `npm run create-admin -- --email you@example.com`)')
  return [
    '',
    `  API          ${base}${apiPrefix(config)}`,
    `  Swagger UI   ${base}/api-docs`,
    `  Outbox       ${path.resolve(config.DATA_DIR, 'outbox')} (emails and text messages of unconfigured channels)`,
    `  Database     ${config.DATABASE_URL ? 'PostgreSQL (DATABASE_URL)' : `embedded PGlite in ${path.resolve(config.DATA_DIR, 'pglite')}`}`,
    `  Admin        ${admin}`,
    ''
  ].join('\n')
}
