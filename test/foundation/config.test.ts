import t from 'tap'
import { ConfigError, loadConfig } from '../../config.ts'

const secret = 'a-production-secret-of-at-least-32-chars'

t.test('defaults apply and strings are converted', async (t) => {
  const config = loadConfig({ PORT: '8080', DEBUG_MODE: 'true', SENTRY_TRACES_SAMPLE_RATE: '0.5' })
  t.equal(config.PORT, 8080)
  t.equal(config.DEBUG_MODE, true)
  t.equal(config.SENTRY_TRACES_SAMPLE_RATE, 0.5)
  t.equal(config.MODE, 'api/v1')
  t.equal(config.ACCESS_TOKEN_EXPIRY_MINUTES, 60)
  t.equal(config.RATE_LIMIT_MAX, 200)
  t.equal(config.DATABASE_URL, undefined, 'no database url = embedded')
})

t.test('MODE may contain slashes; a malformed MODE is refused', async (t) => {
  t.equal(loadConfig({ MODE: 'dev/v1' }).MODE, 'dev/v1')
  t.throws(() => loadConfig({ MODE: '/api//v1' }), { name: 'ConfigError' })
})

t.test('JWT_SECRET is an alias of JWT_SECRET_KEY', async (t) => {
  t.equal(loadConfig({ JWT_SECRET: secret }).JWT_SECRET_KEY, secret)
  t.equal(loadConfig({ JWT_SECRET: 'other'.repeat(8), JWT_SECRET_KEY: secret }).JWT_SECRET_KEY, secret)
})

t.test('invalid values are refused with one line per problem', async (t) => {
  try {
    loadConfig({ PORT: 'eighty', LOG_LEVEL: 'loud', NODE_ENV: 'staging' })
    t.fail('should throw')
  } catch (error) {
    t.ok(error instanceof ConfigError)
    const problems = (error as ConfigError).problems
    t.ok(problems.some((p) => p.startsWith('PORT:')), 'PORT named')
    t.ok(problems.some((p) => p.startsWith('LOG_LEVEL:')), 'LOG_LEVEL named')
    t.ok(problems.some((p) => p.startsWith('NODE_ENV:')), 'NODE_ENV named')
  }
})

t.test('production refuses unsafe or missing settings, one clear line each', async (t) => {
  try {
    loadConfig({ NODE_ENV: 'production', DEBUG_MODE: 'true', CLUSTER_MODE: 'true' })
    t.fail('should throw')
  } catch (error) {
    const problems = (error as ConfigError).problems
    t.ok(problems.some((p) => p.startsWith('JWT_SECRET_KEY:')), 'missing secret')
    t.ok(problems.some((p) => p.startsWith('DEBUG_MODE:')), 'debug on')
    t.ok(problems.some((p) => p.startsWith('REDIS_URL:')), 'embedded store in cluster mode')
    t.ok(problems.some((p) => p.startsWith('DATABASE_URL:')), 'embedded database in cluster mode')
  }
  t.throws(() => loadConfig({ NODE_ENV: 'production', JWT_SECRET_KEY: 'short' }), { name: 'ConfigError' }, 'short secret refused')
  const ok = loadConfig({ NODE_ENV: 'production', JWT_SECRET_KEY: secret, DATABASE_URL: 'postgres://x@db/app', REDIS_URL: 'redis://cache', CLUSTER_MODE: 'true', WEBAUTHN_RP_ID: 'example.com', WEBAUTHN_ORIGINS: 'https://example.com' })
  t.equal(ok.NODE_ENV, 'production')
})

t.test('the server prints each problem on its own line and exits 1', async (t) => {
  const { spawnSync } = await import('node:child_process')
  const result = spawnSync(process.execPath, ['--import', 'tsx', 'server.ts'], {
    env: { PATH: process.env.PATH, NODE_ENV: 'production', DEBUG_MODE: 'true' },
    encoding: 'utf8',
    timeout: 30_000
  })
  t.equal(result.status, 1)
  const lines = result.stderr.trim().split('\n').filter((l) => l.startsWith('config: '))
  t.ok(lines.some((l) => l.includes('JWT_SECRET_KEY')), result.stderr)
  t.ok(lines.some((l) => l.includes('DEBUG_MODE')), result.stderr)
})

t.test('the README configuration table is the schema\'s', async (t) => {
  const { readFileSync } = await import('node:fs')
  const { ConfigSchema } = await import('../../config.ts')
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8')
  for (const [name, schema] of Object.entries(ConfigSchema.properties)) {
    const row = readme.split('\n').find((line) => line.startsWith(`| \`${name}\` |`))
    t.ok(row, `${name} is documented (run npm run docs:config)`)
    t.ok(row?.includes((schema as { description: string }).description), `${name} description is current`)
  }
})
