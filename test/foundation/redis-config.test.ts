import t from 'tap'
import { ConfigError, loadConfig, redisConfigured } from '../../config.ts'
import { parseHostPorts } from '../../plugins/external/store.ts'

const problemsOf = (env: Record<string, string>) => {
  try {
    loadConfig(env)
    return []
  } catch (err) {
    if (err instanceof ConfigError) return err.problems
    throw err
  }
}

t.test('one Redis topology at a time, each with what it needs', async (t) => {
  t.same(problemsOf({ REDIS_SENTINELS: '10.0.0.1:26379,10.0.0.2:26379,[::1]:26379', REDIS_SENTINEL_NAME: 'api', REDIS_PASSWORD: 'p' }), [], 'Sentinel')
  t.same(problemsOf({ REDIS_CLUSTER_NODES: 'redis-1:6379, redis-2:6379', REDIS_KEY_PREFIX: 'app:' }), [], 'Cluster')
  t.same(problemsOf({ REDIS_URL: 'redis://cache:6379', REDIS_SENTINELS: '' }), [], 'an empty variable counts as unset')

  t.match(problemsOf({ REDIS_URL: 'redis://cache', REDIS_CLUSTER_NODES: 'a:1' }), [/^REDIS_URL, REDIS_CLUSTER_NODES: set only one of/], 'URL and cluster')
  t.match(problemsOf({ REDIS_SENTINELS: 'a:1', REDIS_SENTINEL_NAME: 'x', REDIS_CLUSTER_NODES: 'b:2' }), [/^REDIS_SENTINELS, REDIS_CLUSTER_NODES: set only one of/])
  t.match(problemsOf({ REDIS_SENTINELS: 'a:26379' }), [/^REDIS_SENTINEL_NAME: required with REDIS_SENTINELS/])
  t.match(problemsOf({ REDIS_URL: 'redis://cache', REDIS_SENTINEL_NAME: 'x' }), [/^REDIS_SENTINEL_NAME, REDIS_SENTINEL_PASSWORD: only with REDIS_SENTINELS/])
  t.match(problemsOf({ REDIS_URL: 'redis://cache', REDIS_PASSWORD: 'p' }), [/^REDIS_PASSWORD: only with/])
  t.match(problemsOf({ REDIS_CLUSTER_NODES: 'a:1,b', REDIS_KEY_PREFIX: 'x' }), [/^REDIS_CLUSTER_NODES: must be a comma-separated list of host:port/])
  t.match(problemsOf({ REDIS_SENTINELS: 'a', REDIS_SENTINEL_NAME: 'x' }), [/^REDIS_SENTINELS: must be a comma-separated list of host:port/])
  t.match(problemsOf({ REDIS_CLUSTER_NODES: 'a:1', REDIS_KEY_PREFIX: 'app{1}:' }), [/^REDIS_KEY_PREFIX: must not contain \{ or \}/], 'a brace in the prefix would put every key in one slot')

  const production = { NODE_ENV: 'production', JWT_SECRET_KEY: 'x'.repeat(40), DATABASE_URL: 'postgres://x@db/app', CLUSTER_MODE: 'true', WEBAUTHN_RP_ID: 'localhost', WEBAUTHN_ORIGINS: 'http://localhost:3000' }
  t.same(problemsOf({ ...production, REDIS_SENTINELS: 's:26379', REDIS_SENTINEL_NAME: 'api' }), [], 'production cluster mode accepts Sentinel')
  t.same(problemsOf({ ...production, REDIS_CLUSTER_NODES: 'r:6379' }), [], 'and a Redis Cluster')
  t.match(problemsOf(production), [/^REDIS_URL: required in production cluster mode, or REDIS_SENTINELS or REDIS_CLUSTER_NODES/])
  t.equal(redisConfigured(loadConfig({})), false)
})

t.test('host:port lists as ioredis takes them', async (t) => {
  t.same(parseHostPorts('a:1, 10.0.0.2:6379,[::1]:7000'), [{ host: 'a', port: 1 }, { host: '10.0.0.2', port: 6379 }, { host: '::1', port: 7000 }])
  t.throws(() => parseHostPorts('a:99999'), /not host:port/)
})
