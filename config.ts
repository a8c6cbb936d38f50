import path from 'node:path'
import { randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { Type, type Static } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import { describePasswordProblem, passwordProblem } from './plugins/app/auth/password-policy.ts'

/**
 * Every environment variable the service reads: name, default and meaning.
 * The README's configuration table is generated from this schema
 * (`npm run docs:config`), so the two cannot drift apart.
 */
const Bool = (def: boolean, description: string) => Type.Boolean({ default: def, description })
const Int = (def: number, description: string, min = 0, max = Number.MAX_SAFE_INTEGER) =>
  Type.Integer({ default: def, minimum: min, maximum: max, description })
const Str = (def: string, description: string) => Type.String({ default: def, description })
const OptStr = (description: string) => Type.Optional(Type.String({ description }))

export const ConfigSchema = Type.Object({
  NODE_ENV: Type.Union([Type.Literal('development'), Type.Literal('production'), Type.Literal('test')], { default: 'development', description: 'development, test or production; production refuses unsafe settings' }),
  MODE: Type.String({ default: 'api/v1', pattern: '^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$', description: 'URL prefix of every API route (may contain slashes), e.g. api/v1, dev/v1' }),
  API_MODE: Str('', 'Free label of the deployment (shown by P/health); kept from the original project'),
  DEBUG_MODE: Bool(false, 'Verbose errors (stack traces in error bodies); refused in production'),
  LOG_LEVEL: Type.Union(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)), { default: 'info', description: 'pino log level' }),
  HOST: Str('0.0.0.0', 'Address the server listens on'),
  PORT: Int(3000, 'Port the server listens on', 0, 65535),
  DATA_DIR: Str('./data', 'Folder of the embedded mode: PGlite database, uploads, outbox, generated secret'),
  DATABASE_URL: OptStr('PostgreSQL URL (postgres.js); unset = embedded PGlite in DATA_DIR/pglite'),
  DB_POOL_MAX: Int(10, 'Maximum PostgreSQL connections per process', 1, 1000),
  DB_CONNECT_TIMEOUT_SECONDS: Int(5, 'Longest wait for a new PostgreSQL connection; past it the request fails with 503', 1, 120),
  DB_MIGRATE_ON_START: Bool(true, 'Apply migrations and default data at start (PostgreSQL; the embedded database always does). Set false when a one-shot migrate job does it'),
  REDIS_URL: OptStr('Redis URL; unset = in-process store (single instance only)'),
  REDIS_SENTINELS: OptStr('Comma-separated host:port of Redis Sentinels; with REDIS_SENTINEL_NAME the master is found (and followed across failovers) through them. Instead of REDIS_URL'),
  REDIS_SENTINEL_NAME: OptStr('Name the Sentinels monitor the master under (the name in their sentinel monitor line); required with REDIS_SENTINELS'),
  REDIS_SENTINEL_PASSWORD: OptStr('Password of the Sentinels themselves (their requirepass), when they have one'),
  REDIS_CLUSTER_NODES: OptStr('Comma-separated host:port of some Redis Cluster nodes (the others are discovered); instead of REDIS_URL and REDIS_SENTINELS'),
  REDIS_PASSWORD: OptStr('Password of the Redis servers reached through REDIS_SENTINELS or REDIS_CLUSTER_NODES (REDIS_URL carries its own)'),
  REDIS_COMMAND_TIMEOUT_MS: Int(2000, 'A Redis command unanswered this long fails (and security checks fail closed)', 100, 60000),
  REDIS_KEY_PREFIX: Str('', 'Prefix of every Redis key (lets several deployments or test files share one Redis)'),
  JWT_SECRET_KEY: OptStr('HMAC secret for tokens and OTP hashes (32+ chars); alias JWT_SECRET; generated into DATA_DIR when unset outside production'),
  JWT_ISSUER: Str('fastify-auth-backend', 'iss claim of issued tokens'),
  JWT_AUDIENCE: Str('fastify-auth-backend-api', 'aud claim of issued tokens'),
  ACCESS_TOKEN_EXPIRY_MINUTES: Int(60, 'Access token lifetime', 1),
  SESSION_TOKEN_EXPIRY_MINUTES: Int(10080, 'Session token lifetime (7 days)', 1),
  REFRESH_TOKEN_EXPIRY_MINUTES: Int(43200, 'Absolute session / refresh token lifetime (30 days)', 1),
  SESSION_IDLE_TIMEOUT_MINUTES: Int(10080, 'A session unused (not refreshed) this long expires (7 days)', 1),
  REFRESH_REUSE_GRACE_SECONDS: Int(10, 'A rotated refresh token replayed within this window gets the same new tokens instead of revoking the session', 0, 300),
  LOGIN_LOCKOUT_THRESHOLD: Int(5, 'Consecutive failed logins on one account before it is locked (429 + Retry-After)', 1),
  LOGIN_LOCKOUT_BASE_SECONDS: Int(30, 'First lockout; each further failure doubles it', 1),
  LOGIN_LOCKOUT_MAX_SECONDS: Int(900, 'Longest lockout (15 minutes)', 1),
  AUTH_RATE_LIMIT_PER_IP: Int(30, 'Login, token, refresh, OTP and sign-up requests per IP per minute, per route', 1),
  AUTH_RATE_LIMIT_PER_IDENTIFIER: Int(10, 'Login / OTP / reset requests per identifier (email, phone, user name) per minute', 1),
  AUTH_STATE_CACHE_SECONDS: Int(60, 'How long a cached session/user state is trusted before Postgres is asked again (revocations overwrite it at once)', 1, 3600),
  RATE_LIMIT_MAX: Int(200, 'Global requests per IP per window', 1),
  RATE_LIMIT_WINDOW_SECONDS: Int(60, 'Window of the global per-IP rate limit', 1),
  TRUST_PROXY: Str('', 'Proxies whose X-Forwarded-For is honoured: comma-separated IPs/CIDRs, or a hop count; empty = none'),
  CORS_ORIGINS: Str('', 'Comma-separated allow-list of browser origins; empty = no cross-origin access'),
  BODY_LIMIT_BYTES: Int(1048576, 'Largest JSON/form body accepted (bytes); larger gets 413', 1024),
  HEADERS_TIMEOUT_MS: Int(15000, 'Longest wait for a request\'s complete headers; past it the connection gets 408 and is closed (slow-header clients). At most REQUEST_TIMEOUT_MS', 1000, 600000),
  REQUEST_TIMEOUT_MS: Int(120000, 'Longest wait for a whole request, headers and body (uploads included); past it the connection gets 408 and is closed (slow-body clients). Raise it for large uploads over slow links', 1000, 3600000),
  STORAGE_DRIVER: Type.Union([Type.Literal('local'), Type.Literal('gcs')], { default: 'local', description: 'Where uploaded files are kept: local = DATA_DIR/uploads (served back through signed URLs), gcs = Google Cloud Storage' }),
  GOOGLE_STORAGE_BUCKET_NAME: OptStr('Cloud Storage bucket of STORAGE_DRIVER=gcs; credentials from GOOGLE_APPLICATION_CREDENTIALS or the ambient service account'),
  GCS_API_ENDPOINT: OptStr('Cloud Storage API endpoint override (emulators, tests), e.g. http://127.0.0.1:4443; requests to it are not authenticated'),
  GCS_PUBLIC_URLS: Bool(false, 'Give clients the public URL of GCS objects (the bucket must allow public reads); otherwise signed URLs'),
  STORAGE_SIGNED_URL_TTL_SECONDS: Int(3600, 'Lifetime of the signed download URLs of uploaded files (local and GCS)', 60, 604800),
  UPLOAD_MAX_BYTES_IMAGE: Int(10485760, 'Largest accepted image upload (bytes); larger gets 413 FILE_TOO_LARGE', 1),
  UPLOAD_MAX_BYTES_VIDEO: Int(104857600, 'Largest accepted video upload (bytes)', 1),
  UPLOAD_MAX_BYTES_PDF: Int(20971520, 'Largest accepted PDF upload (bytes)', 1),
  UPLOAD_MAX_BYTES_DOCUMENT: Int(20971520, 'Largest accepted office document upload (bytes)', 1),
  UPLOAD_QUOTA_BYTES_PER_USER: Int(1073741824, 'Storage quota per user: the sizes of their uploaded media together (1 GiB); past it 413 UPLOAD_QUOTA_EXCEEDED; 0 = no quota', 0),
  UPLOAD_RATE_LIMIT_PER_MINUTE: Int(30, 'POST P/upload/media requests per user per minute (429 RATE_LIMITED past it)', 1),
  UPLOAD_URL_TIMEOUT_MS: Int(10000, 'Deadline of a URL upload: lookups, connections, redirects and body together', 100, 600000),
  UPLOAD_URL_MAX_REDIRECTS: Int(3, 'Redirects a URL upload follows at most; each target is checked again', 0, 10),
  UPLOAD_URL_ALLOW_LOOPBACK: Bool(false, 'Tests only: let URL uploads reach 127.0.0.0/8 and ::1 (every other private range stays refused); refused in production'),
  PROFILE_PICTURE_MAX_DIMENSION: Int(1024, 'Profile pictures are scaled down to fit this many pixels per side', 64, 4096),
  PROFILE_PICTURE_THUMBNAIL_SIZE: Int(128, 'Side of the square profile picture thumbnail (pixels)', 16, 512),
  IMAGE_POOL_THREADS: Int(1, 'Worker threads re-encoding images (started on first use)', 1, 64),
  ACTIVITY_LOG_REQUESTS: Bool(true, 'Write an activity_log row for every mutating request (POST/PUT/PATCH/DELETE) that has no explicit audit row; auth events are always written'),
  ACTIVITY_LOG_CLIENT_ERRORS: Type.Union(['none', 'unaudited', 'all'].map((l) => Type.Literal(l)), { default: 'unaudited', description: 'Which mutating requests answered 4xx get an automatic activity_log row: unaudited = only routes without an audit row of their own (config.audited), none = no 4xx rows, all = every route; audit rows are always written' }),
  ACTIVITY_FLUSH_INTERVAL_MS: Int(1000, 'Activity rows are buffered and written in batches at least this often', 10, 60000),
  ACTIVITY_BATCH_SIZE: Int(200, 'A batch is written as soon as this many activity rows wait', 1, 2000),
  ACTIVITY_BUFFER_MAX: Int(10000, 'Most activity rows held in memory (e.g. while PostgreSQL is down); when full, the oldest request rows are dropped and counted, audit rows never', 10, 1000000),
  ACTIVITY_MIN_RETENTION_DAYS: Int(30, 'DELETE P/activity/cleanup refuses to delete rows younger than this many days', 1, 3650),
  ACTIVITY_PARTITION_INTERVAL: Type.Union(['month', 'week', 'day'].map((l) => Type.Literal(l)), { default: 'month', description: 'activity_log is partitioned by created_at: one partition per UTC month, ISO week or day; changing it applies to partitions created from then on' }),
  ACTIVITY_RETENTION_DAYS: Int(0, 'Partitions of activity_log wholly older than this many days are dropped by the hourly maintenance; 0 keeps everything (the audit trail is only deleted when asked). At least ACTIVITY_MIN_RETENTION_DAYS when set', 0, 36500),
  ACTIVITY_MAINTENANCE_INTERVAL_MINUTES: Int(60, 'How often an instance runs the activity_log partition maintenance (create ahead, drop expired; one instance at a time)', 1, 1440),
  ACTIVITY_CLIENT_EVENTS_PER_MINUTE: Int(60, 'Client events (POST P/activity) a user may record per minute', 1),
  DASHBOARD_CACHE_SECONDS: Int(30, 'How long a dashboard statistic is served from the cache; 0 = never cached', 0, 3600),
  LOAD_SHED_EVENT_LOOP_DELAY_MS: Int(1000, 'Answer 503 (Retry-After) while the event loop lags more than this; 0 = never shed load', 0),
  METRICS_ENABLED: Bool(true, 'Serve Prometheus metrics at GET /metrics'),
  METRICS_TOKEN: Type.Optional(Type.String({ minLength: 16, description: 'When set, GET /metrics needs Authorization: Bearer <token> (16+ chars); in production /metrics is served only when it is set' })),
  API_DOCS_ENABLED: Type.Optional(Type.Boolean({ description: 'Serve Swagger UI and the OpenAPI document at /api-docs; unset = on, except in production' })),
  STORAGE_HEALTH_CACHE_SECONDS: Int(30, 'P/health/storage runs its probe (a file write, or a bucket read) at most once per this many seconds per instance and answers the cached result meanwhile', 1, 3600),
  CLUSTER_MODE: Bool(false, 'Set when several instances run (PM2 cluster, replicas); refuses in-process stores in production'),
  SENTRY_DSN: OptStr('Sentry DSN; unset = errors are only logged'),
  SENTRY_ENVIRONMENT: OptStr('Sentry environment name (defaults to NODE_ENV)'),
  SENTRY_TRACES_SAMPLE_RATE: Type.Number({ default: 0, minimum: 0, maximum: 1, description: 'Share of requests traced by Sentry' }),
  BOOTSTRAP_ADMIN_EMAIL: OptStr('With BOOTSTRAP_ADMIN_PASSWORD: creates a super admin at start when none is active'),
  BOOTSTRAP_ADMIN_PASSWORD: OptStr('Password of the bootstrap super admin; the password policy applies (PASSWORD_MIN/MAX_LENGTH, common passwords): a refused one stops the start'),
  PASSWORD_MIN_LENGTH: Int(8, 'Shortest accepted password (characters)', 1, 128),
  PASSWORD_MAX_LENGTH: Int(128, 'Longest accepted password (characters); longer is refused before hashing', 8, 1024),
  ARGON2_MEMORY_KIB: Int(19456, 'Argon2id memory cost in KiB (19 MiB)', 1024),
  ARGON2_TIME_COST: Int(2, 'Argon2id iterations', 1, 10),
  ARGON2_PARALLELISM: Int(1, 'Argon2id lanes', 1, 8),
  HASH_POOL_THREADS: Int(0, 'Worker threads hashing passwords; 0 = one per core', 0, 64),
  SHUTDOWN_GRACE_MS: Int(10000, 'Longest graceful shutdown before the process exits anyway', 100),
  SHUTDOWN_DRAIN_MS: Int(5000, 'On SIGTERM/SIGINT (or PM2\'s shutdown message): the lame-duck window. The probes (/health, /health/ready) answer 503 from its start; for its first half the process still listens and serves (the load balancer takes it out), then it stops listening and answers open connections with Connection: close; connections still silent at its end are closed; ends early once none is left. Below SHUTDOWN_GRACE_MS', 0),
  KEEP_ALIVE_TIMEOUT_MS: Int(72000, 'An idle keep-alive connection is closed after this long; keep it above the proxy\'s upstream idle timeout (Caddyfile: keepalive 60s), so the proxy never reuses a connection the API is closing', 1000),
  APP_NAME: Str('Auth API', 'Product name shown in emails and text messages'),
  EMAIL_HOST: OptStr('SMTP server; unset = email goes to the development outbox (DATA_DIR/outbox), or fails in production'),
  EMAIL_PORT: Int(587, 'SMTP port (587 STARTTLS, 465 implicit TLS with EMAIL_SECURE)', 1, 65535),
  EMAIL_SECURE: Bool(false, 'Connect to SMTP over TLS from the start (port 465); otherwise STARTTLS is used when offered'),
  EMAIL_HOST_USER: OptStr('SMTP user name'),
  EMAIL_HOST_PASSWORD: OptStr('SMTP password'),
  EMAIL_FROM: OptStr('Sender address of emails (defaults to EMAIL_HOST_USER when it is an address, else no-reply@localhost)'),
  TWILIO_ACCOUNT_SID: OptStr('Twilio account SID (AC...); with TWILIO_AUTH_TOKEN enables SMS and WhatsApp; unset = development outbox, or fails in production'),
  TWILIO_AUTH_TOKEN: OptStr('Twilio auth token'),
  TWILIO_PHONE_NUMBER: OptStr('Sender number of SMS (E.164), used when no messaging service is set'),
  TWILIO_WHATSAPP_NUMBER: OptStr('Sender number of WhatsApp messages (E.164, without the whatsapp: prefix)'),
  TWILIO_MESSAGING_SERVICE_ID: OptStr('Twilio messaging service SID (MG...); when set, SMS (and WhatsApp without TWILIO_WHATSAPP_NUMBER) are sent through it'),
  TWILIO_API_BASE_URL: OptStr('Replaces https://api.twilio.com (tests point it at a local server)'),
  NOTIFY_TIMEOUT_MS: Int(10000, 'Longest wait for the SMTP server or Twilio before a delivery counts as failed', 100, 120000),
  OTP_LENGTH: Int(6, 'Digits of a one-time password', 4, 10),
  OTP_TTL_SECONDS: Int(600, 'Lifetime of a one-time password (10 minutes)', 30, 86400),
  OTP_MAX_ATTEMPTS: Int(5, 'Wrong guesses that burn a one-time password', 1, 20),
  OTP_RESEND_COOLDOWN_SECONDS: Int(60, 'Shortest wait between two codes sent to one destination', 0, 3600),
  OTP_DAILY_LIMIT: Int(10, 'Codes sent to one destination per UTC day', 1, 1000),
  INVITE_TTL_HOURS: Int(72, 'Lifetime of an invitation code sent to an account created without a password (POST P/users)', 1, 720),
  AVAILABILITY_RATE_LIMIT_PER_IP: Int(10, 'check-user-availability requests per IP per minute', 1),
  REAUTH_WINDOW_MINUTES: Int(10, 'A login this recent counts as fresh for sensitive changes (email, phone, password); otherwise the current password is required', 1, 1440),
  WEBAUTHN_RP_ID: OptStr('Passkeys: the relying party id, the site\'s registrable domain (e.g. example.com; passkeys are bound to it); unset = localhost, required in production'),
  WEBAUTHN_RP_NAME: OptStr('Passkeys: the name authenticators show for the site; unset = APP_NAME'),
  WEBAUTHN_ORIGINS: OptStr('Passkeys: comma-separated origins the browser ceremonies may run on (https://app.example.com), each on WEBAUTHN_RP_ID or a subdomain of it; unset = http://localhost:<PORT>, required in production'),
  WEBAUTHN_CHALLENGE_TTL_SECONDS: Int(300, 'Passkeys: lifetime of a registration or sign-in challenge (single use)', 30, 3600),
  AUTH_LOCAL_CACHE_TTL_MS: Int(3000, 'Redis stack: how long a session\'s auth state is reused in process at most (a change reaches every instance at once through an invalidation channel; this bounds anything missed); 0 = always ask Redis', 0, 10000),
  RATE_LIMIT_SYNC_MS: Int(100, 'Redis stack: the global per-IP limit is counted in process and added to the shared counters this often (and when 5% of the limit is pending on a key); the README (choices where the spec is silent) gives the overshoot this allows. 0 = one Redis script per request (exact)', 0, 1000),
  JWT_ALGORITHM: Type.Union([Type.Literal('EdDSA'), Type.Literal('ES256'), Type.Literal('RS256'), Type.Literal('HS256')], { default: 'EdDSA', description: 'Signature of access and session tokens: EdDSA (Ed25519), ES256 or RS256 with a key pair kept in the database and published at /.well-known/jwks.json, or HS256 with JWT_SECRET_KEY (nothing published). After a switch, tokens signed before it stay valid until they expire. The same on every instance' }),
  JWT_KEY_ROTATION_DAYS: Int(30, 'A new signing key replaces the current one when it is this many days old (checked at start and hourly, once across instances); the old one stays published until the last token it signed has expired. 0 = only by npm run rotate-keys', 0, 3650),
  JWT_VERIFY_CACHE_SIZE: Int(10000, 'Verified tokens remembered per key, so a token presented again is not verified again (its expiry still is); 0 = verify every time', 0, 1000000),
  PUBLIC_URL: OptStr('Public base URL of the API (e.g. https://auth.example.com), used for the absolute URLs of /.well-known/openid-configuration; unset = taken from the request (Host, or X-Forwarded-Host/-Proto from a TRUST_PROXY proxy)')
})

export type AppConfig = Static<typeof ConfigSchema>

export class ConfigError extends Error {
  constructor (readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`)
    this.name = 'ConfigError'
  }
}

const aliases: Record<string, string> = { JWT_SECRET: 'JWT_SECRET_KEY' }

/** Reads, converts and validates the environment; throws ConfigError with one line per problem. */
export function loadConfig (env: Record<string, string | undefined> = process.env): AppConfig {
  const raw: Record<string, unknown> = {}
  for (const key of Object.keys(ConfigSchema.properties)) {
    const value = env[key]
    if (value !== undefined && value !== '') raw[key] = value
  }
  for (const [alias, name] of Object.entries(aliases)) {
    if (raw[name] === undefined && env[alias]) raw[name] = env[alias]
  }
  const converted = Value.Convert(ConfigSchema, Value.Default(ConfigSchema, raw))
  const problems = [...Value.Errors(ConfigSchema, converted)].map((e) => `${e.path.slice(1) || 'config'}: ${e.message} (got ${JSON.stringify(e.value)})`)
  if (problems.length > 0) throw new ConfigError(problems)
  const config = converted as AppConfig
  problems.push(...productionProblems(config))
  if (problems.length > 0) throw new ConfigError(problems)
  return config
}

function productionProblems (config: AppConfig): string[] {
  const problems: string[] = []
  if (config.JWT_SECRET_KEY !== undefined && config.JWT_SECRET_KEY.length < 32) {
    problems.push('JWT_SECRET_KEY: must be at least 32 characters')
  }
  if (config.SHUTDOWN_DRAIN_MS >= config.SHUTDOWN_GRACE_MS) problems.push('SHUTDOWN_DRAIN_MS: must be below SHUTDOWN_GRACE_MS (the drain is part of the graceful shutdown, which also closes the pools)')
  if (config.ACTIVITY_RETENTION_DAYS > 0 && config.ACTIVITY_RETENTION_DAYS < config.ACTIVITY_MIN_RETENTION_DAYS) problems.push('ACTIVITY_RETENTION_DAYS: must be 0 (keep everything) or at least ACTIVITY_MIN_RETENTION_DAYS')
  if (config.HEADERS_TIMEOUT_MS > config.REQUEST_TIMEOUT_MS) problems.push('HEADERS_TIMEOUT_MS: must not exceed REQUEST_TIMEOUT_MS (Node refuses it)')
  problems.push(...redisProblems(config))
  if (config.PUBLIC_URL !== undefined && !/^https?:\/\/[^/?#\s]+(\/[^?#\s]*[^/?#\s])?$/.test(config.PUBLIC_URL)) problems.push('PUBLIC_URL: must be an http(s) URL without query, fragment or trailing slash, e.g. https://auth.example.com')
  if (config.STORAGE_DRIVER === 'gcs' && !config.GOOGLE_STORAGE_BUCKET_NAME) problems.push('GOOGLE_STORAGE_BUCKET_NAME: required when STORAGE_DRIVER=gcs')
  // The API's own password policy: a bootstrap admin gets no password a user could not choose.
  if (config.BOOTSTRAP_ADMIN_PASSWORD !== undefined) {
    const limits = { min: config.PASSWORD_MIN_LENGTH, max: config.PASSWORD_MAX_LENGTH }
    const problem = passwordProblem(config.BOOTSTRAP_ADMIN_PASSWORD, limits)
    if (problem) problems.push(`BOOTSTRAP_ADMIN_PASSWORD: ${describePasswordProblem(problem, limits)}`)
  }
  problems.push(...webauthnProblems(config))
  if (config.NODE_ENV !== 'production') return problems
  if (!config.JWT_SECRET_KEY) problems.push('JWT_SECRET_KEY: required in production (32+ random characters)')
  if (config.DEBUG_MODE) problems.push('DEBUG_MODE: must be off in production')
  if (config.UPLOAD_URL_ALLOW_LOOPBACK) problems.push('UPLOAD_URL_ALLOW_LOOPBACK: must be off in production (it lets URL uploads reach this host)')
  if (config.CLUSTER_MODE && !redisConfigured(config)) problems.push('REDIS_URL: required in production cluster mode, or REDIS_SENTINELS or REDIS_CLUSTER_NODES (the in-process store is not shared between instances)')
  if (config.CLUSTER_MODE && !config.DATABASE_URL) problems.push('DATABASE_URL: required in production cluster mode (the embedded database is single-process)')
  if (config.BOOTSTRAP_ADMIN_PASSWORD !== undefined && config.BOOTSTRAP_ADMIN_PASSWORD.length < 12) problems.push('BOOTSTRAP_ADMIN_PASSWORD: at least 12 characters in production')
  return problems
}

/** Whether a Redis is configured (one server, Sentinels or a cluster) rather than the in-process store. */
export const redisConfigured = (config: AppConfig) => Boolean(config.REDIS_URL || config.REDIS_SENTINELS || config.REDIS_CLUSTER_NODES)

const HOST_PORTS = /^\s*(?:\[[^\]]+\]|[^:\s,]+):\d{1,5}\s*(?:,\s*(?:\[[^\]]+\]|[^:\s,]+):\d{1,5}\s*)*$/

/** One Redis topology at a time, each with what it needs. */
function redisProblems (config: AppConfig): string[] {
  const problems: string[] = []
  const chosen = (['REDIS_URL', 'REDIS_SENTINELS', 'REDIS_CLUSTER_NODES'] as const).filter((name) => config[name])
  if (chosen.length > 1) problems.push(`${chosen.join(', ')}: set only one of REDIS_URL (one server), REDIS_SENTINELS (Sentinel) or REDIS_CLUSTER_NODES (Redis Cluster)`)
  for (const name of ['REDIS_SENTINELS', 'REDIS_CLUSTER_NODES'] as const) {
    const value = config[name]
    if (value && !HOST_PORTS.test(value)) problems.push(`${name}: must be a comma-separated list of host:port (got ${JSON.stringify(value)})`)
  }
  if (config.REDIS_SENTINELS && !config.REDIS_SENTINEL_NAME) problems.push('REDIS_SENTINEL_NAME: required with REDIS_SENTINELS (the name the Sentinels monitor the master under)')
  if (!config.REDIS_SENTINELS && (config.REDIS_SENTINEL_NAME || config.REDIS_SENTINEL_PASSWORD)) problems.push('REDIS_SENTINEL_NAME, REDIS_SENTINEL_PASSWORD: only with REDIS_SENTINELS')
  if (config.REDIS_PASSWORD && !config.REDIS_SENTINELS && !config.REDIS_CLUSTER_NODES) problems.push('REDIS_PASSWORD: only with REDIS_SENTINELS or REDIS_CLUSTER_NODES (put the password in REDIS_URL)')
  // A brace in the prefix would become every key's hash tag: all keys in one cluster slot.
  if (config.REDIS_CLUSTER_NODES && /[{}]/.test(config.REDIS_KEY_PREFIX)) problems.push('REDIS_KEY_PREFIX: must not contain { or } with REDIS_CLUSTER_NODES (it would put every key in one slot)')
  return problems
}

export interface RelyingParty { id: string, name: string, origins: string[] }

/** The passkeys' relying party: WEBAUTHN_* with their development defaults (localhost, http://localhost:<PORT>). */
export function relyingParty (config: AppConfig): RelyingParty {
  const origins = (config.WEBAUTHN_ORIGINS ?? `http://localhost:${config.PORT}`).split(',').map((o) => o.trim().replace(/\/$/, '')).filter(Boolean)
  return { id: config.WEBAUTHN_RP_ID ?? 'localhost', name: config.WEBAUTHN_RP_NAME ?? config.APP_NAME, origins }
}

/**
 * A relying party the browsers would refuse is a start-up error, not a failure at
 * each ceremony: every origin must be an http(s) origin (no path) on the RP id or a
 * subdomain of it. In production both must be set (a localhost default would bind
 * every passkey to the wrong site).
 */
function webauthnProblems (config: AppConfig): string[] {
  const problems: string[] = []
  if (config.NODE_ENV === 'production') {
    if (!config.WEBAUTHN_RP_ID) problems.push('WEBAUTHN_RP_ID: required in production (the domain passkeys are bound to, e.g. example.com)')
    if (!config.WEBAUTHN_ORIGINS) problems.push('WEBAUTHN_ORIGINS: required in production (the https origins of the sites that use passkeys)')
  }
  const rp = relyingParty(config)
  if (!/^[a-z0-9.-]+$/i.test(rp.id) || rp.id.startsWith('.') || rp.id.endsWith('.')) problems.push(`WEBAUTHN_RP_ID: must be a domain name without scheme or port (got ${JSON.stringify(rp.id)})`)
  for (const origin of rp.origins) {
    let url: URL | undefined
    try { url = new URL(origin) } catch { url = undefined }
    if (!url || !['http:', 'https:'].includes(url.protocol) || url.origin !== origin) {
      problems.push(`WEBAUTHN_ORIGINS: ${JSON.stringify(origin)} is not an http(s) origin (scheme, host and optional port, no path)`)
    } else if (url.hostname !== rp.id.toLowerCase() && !url.hostname.endsWith(`.${rp.id.toLowerCase()}`)) {
      problems.push(`WEBAUTHN_ORIGINS: ${JSON.stringify(origin)} is not on WEBAUTHN_RP_ID ${JSON.stringify(rp.id)} or a subdomain of it`)
    } else if (config.NODE_ENV === 'production' && url.protocol !== 'https:' && url.hostname !== 'localhost') {
      problems.push(`WEBAUTHN_ORIGINS: ${JSON.stringify(origin)} must be https in production (browsers allow passkeys only in secure contexts)`)
    }
  }
  return problems
}

/** Whether /api-docs is served: API_DOCS_ENABLED when set, otherwise everywhere but production. */
export const apiDocsEnabled = (config: AppConfig) => config.API_DOCS_ENABLED ?? config.NODE_ENV !== 'production'

/** The API prefix, e.g. `/api/v1`. */
export const apiPrefix = (config: AppConfig) => `/${config.MODE}`

/**
 * Outside production, a missing JWT_SECRET_KEY is generated once and kept in
 * DATA_DIR/secret.key, so tokens survive restarts of `npm start`.
 */
export function withGeneratedSecret (config: AppConfig): AppConfig {
  if (config.JWT_SECRET_KEY) return config
  const file = path.join(config.DATA_DIR, 'secret.key')
  let secret: string
  try {
    secret = readFileSync(file, 'utf8').trim()
  } catch {
    mkdirSync(config.DATA_DIR, { recursive: true })
    secret = randomBytes(48).toString('base64url')
    writeFileSync(file, secret + '\n', { mode: 0o600, flag: 'wx' })
  }
  return { ...config, JWT_SECRET_KEY: secret }
}
