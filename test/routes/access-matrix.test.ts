import t from 'tap'
import { randomBytes } from 'node:crypto'
import { Readable } from 'node:stream'
import { eq } from 'drizzle-orm'
import type { FastifyInstance, InjectOptions } from 'fastify'
import { build } from '../helpers/build.ts'
import { defaultPassword, type NewTestUser } from '../helpers/users.ts'
import { lastCode } from '../helpers/otp.ts'
import { png } from '../upload/samples.ts'
import { activityLog, permission, user } from '../../db/schema/index.ts'
import { actor, fastEnv, groupWith, type Actor } from '../admin/helpers.ts'
import { generate } from 'otplib'
import { SoftAuthenticator } from '../helpers/webauthn.ts'

/**
 * SR-24, table-driven over every route of the API, read from the OpenAPI
 * document (so routes added later are covered without touching this file, and
 * make it fail until they are):
 * - every registered route is in the document, and each operation either
 *   declares its permissions (x-permissions, security, description) or is in
 *   the explicit list of public routes below;
 * - no token → 401; a user holding every permission but the required ones → 403;
 * - a user holding exactly the required ones → 2xx, with the example input of
 *   the table below. A protected route without an example fails the test.
 */

const PUBLIC = new Set([
  'GET /health',
  'GET /health/ready',
  'GET /.well-known/jwks.json',
  'GET /.well-known/openid-configuration',
  'POST /api/v1/token',
  'POST /api/v1/auth/login-with-password',
  'POST /api/v1/auth/refresh-token',
  'POST /api/v1/auth/send-one-time-password',
  'POST /api/v1/auth/verify-one-time-password',
  'POST /api/v1/auth/login-with-otp',
  'POST /api/v1/auth/mfa/challenge',
  'POST /api/v1/auth/passkeys/login/options',
  'POST /api/v1/auth/passkeys/login/verify',
  'POST /api/v1/auth/check-user-availability',
  'POST /api/v1/auth/forget-password',
  'POST /api/v1/auth/verify',
  'POST /api/v1/auth/accept-invitation',
  'GET /api/v1/health',
  'GET /api/v1/health/database',
  'GET /api/v1/health/storage',
  'GET /api/v1/upload/files/{folder}/{name}'
])

interface Ctx {
  app: FastifyInstance
  /** The caller: holds exactly the route's permissions (none for `[]` routes). */
  me: Actor
  /** Another plain user, for routes that act on someone else. */
  other: () => Promise<Actor>
}

interface Sample {
  params?: Record<string, string>
  query?: Record<string, string>
  payload?: unknown
  headers?: Record<string, string>
}

interface Example {
  /** How the caller is created (extra fields; its groups are set by the test). */
  caller?: NewTestUser
  sample?: (ctx: Ctx) => Promise<Sample> | Sample
}

const unique = () => randomBytes(4).toString('hex')
const noBody = { payload: {} }

function multipart (file: Buffer, filename = 'picture.png', type = 'image/png'): Sample {
  const boundary = `----matrix${unique()}`
  return {
    payload: Buffer.concat([
      Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${filename}"\r\nContent-Type: ${type}\r\n\r\n`),
      file,
      Buffer.from(`\r\n--${boundary}--\r\n`)
    ]),
    headers: { 'content-type': `multipart/form-data; boundary=${boundary}` }
  }
}

async function customPermission (app: FastifyInstance) {
  const [row] = await app.db.insert(permission).values({ codename: `matrix_${unique()}`, name: 'Matrix', category: 'matrix' }).returning()
  return row.permission_id
}

/** Starts a TOTP enrolment for the caller: the pending factor and its secret. */
async function startTotp (app: FastifyInstance, me: Actor) {
  const res = await app.inject({ method: 'POST', url: '/api/v1/auth/mfa/totp', headers: me.headers })
  if (res.statusCode !== 200) throw new Error(`mfa/totp: ${res.body}`)
  return res.json().data as { factor_id: string, secret: string }
}
const totp = (app: FastifyInstance, secret: string, stepOffset = 0) => generate({ secret, epoch: Math.floor(app.now() / 1000) + stepOffset * 30 })

/** A registration answer to the caller's passkey options, from a software authenticator on the test config's origin. */
async function passkeyRegistration (app: FastifyInstance, me: Actor) {
  const res = await app.inject({ method: 'POST', url: '/api/v1/auth/passkeys/register/options', headers: me.headers })
  if (res.statusCode !== 200) throw new Error(`passkeys/register/options: ${res.body}`)
  return { credential: new SoftAuthenticator({ origin: 'http://localhost:3000', rpId: 'localhost' }).create(res.json().data) }
}
/** Registers a passkey for the caller: its id. */
async function registerPasskey (app: FastifyInstance, me: Actor) {
  const res = await app.inject({ method: 'POST', url: '/api/v1/auth/passkeys/register/verify', headers: me.headers, payload: await passkeyRegistration(app, me) })
  if (res.statusCode !== 200) throw new Error(`passkeys/register/verify: ${res.body}`)
  return res.json().data.id as string
}

/** Example inputs, keyed like the OpenAPI document: `METHOD /path/{param}`. */
const examples: Record<string, Example> = {
  // auth
  'POST /api/v1/auth/logout': { sample: () => noBody },
  'GET /api/v1/auth/token-info': {},
  'POST /api/v1/auth/token-info': { sample: () => noBody },
  'GET /api/v1/auth/sessions': {},
  'DELETE /api/v1/auth/sessions/{session_id}': { sample: ({ me }) => ({ params: { session_id: me.sessionId } }) },
  'POST /api/v1/auth/set-password': { caller: { password: null }, sample: () => ({ payload: { password: 'a sturdy new passphrase 7' } }) },
  'POST /api/v1/auth/change-password': { sample: () => ({ payload: { current_password: defaultPassword, new_password: 'another sturdy passphrase 8' } }) },
  'POST /api/v1/auth/verify-email-and-phone': {
    sample: async ({ app, me }) => {
      await app.db.update(user).set({ is_email_verified: false }).where(eq(user.user_id, me.id))
      await app.sessions.refreshUserState(me.id)
      const sent = await app.inject({ method: 'POST', url: '/api/v1/auth/send-one-time-password', headers: me.headers, payload: { email: me.email, purpose: 'verify_email' } })
      if (sent.statusCode !== 200) throw new Error(`send-one-time-password: ${sent.body}`)
      return { payload: { email: me.email, otp: lastCode(app, me.email, 'verify_email') } }
    }
  },

  // mfa
  'GET /api/v1/auth/mfa': {},
  'POST /api/v1/auth/mfa/totp': {},
  'POST /api/v1/auth/mfa/totp/verify': {
    sample: async ({ app, me }) => {
      const { factor_id: factorId, secret } = await startTotp(app, me)
      return { payload: { factor_id: factorId, code: await totp(app, secret) } }
    }
  },
  'DELETE /api/v1/auth/mfa/{factor_id}': { sample: async ({ app, me }) => ({ params: { factor_id: (await startTotp(app, me)).factor_id } }) },
  'POST /api/v1/auth/mfa/recovery-codes': {
    // Needs a factor and an aal2 session: enrol, then log in again with the next step's code.
    sample: async ({ app, me }) => {
      const { factor_id: factorId, secret } = await startTotp(app, me)
      await app.inject({ method: 'POST', url: '/api/v1/auth/mfa/totp/verify', headers: me.headers, payload: { factor_id: factorId, code: await totp(app, secret) } })
      const first = await app.inject({ method: 'POST', url: '/api/v1/auth/login-with-password', payload: { identifier: me.email, password: defaultPassword } })
      const second = await app.inject({ method: 'POST', url: '/api/v1/auth/mfa/challenge', payload: { mfa_ticket: first.json().data.mfa_ticket, code: await totp(app, secret, 1) } })
      if (second.statusCode !== 200) throw new Error(`mfa/challenge: ${second.body}`)
      return { headers: { authorization: `Bearer ${second.json().data.access_token as string}` } }
    }
  },

  // passkeys
  'POST /api/v1/auth/passkeys/register/options': {},
  'POST /api/v1/auth/passkeys/register/verify': { sample: async ({ app, me }) => ({ payload: await passkeyRegistration(app, me) }) },
  'GET /api/v1/auth/passkeys': {},
  'PATCH /api/v1/auth/passkeys/{passkey_id}': { sample: async ({ app, me }) => ({ params: { passkey_id: await registerPasskey(app, me) }, payload: { name: 'Renamed' } }) },
  'DELETE /api/v1/auth/passkeys/{passkey_id}': { sample: async ({ app, me }) => ({ params: { passkey_id: await registerPasskey(app, me) } }) },

  // health
  'GET /api/v1/health/system': {},
  'POST /api/v1/health/test-sentry': {},

  // settings
  'GET /api/v1/settings': {},
  'GET /api/v1/settings/profile': {},
  'PUT /api/v1/settings/profile': { sample: () => ({ payload: { first_name: 'Matrix', timezone: 'Europe/Paris' } }) },
  'GET /api/v1/settings/profile/{user_id}': { sample: async ({ other }) => ({ params: { user_id: (await other()).id } }) },
  'POST /api/v1/settings/profile-accessibility': { sample: () => ({ payload: { profile_accessibility: 'private' } }) },
  'POST /api/v1/settings/profile-language': { sample: () => ({ payload: { language: 'es' } }) },
  'POST /api/v1/settings/update-theme': { sample: () => ({ payload: { theme: 'dark' } }) },
  'POST /api/v1/settings/update-timezone': { sample: () => ({ payload: { timezone: 'Asia/Tokyo' } }) },
  'POST /api/v1/settings/deactivate-account': { sample: () => noBody },
  'POST /api/v1/settings/delete-account': { sample: () => noBody },
  'POST /api/v1/settings/change-email': { sample: () => ({ payload: { new_email: `moved-${unique()}@example.com` } }) },
  'POST /api/v1/settings/change-phone': { sample: () => ({ payload: { new_phone_number: '+14155550177' } }) },
  'POST /api/v1/settings/profile-picture': { sample: async () => multipart(await png(64, 64)) },

  // upload
  'POST /api/v1/upload/media': { sample: async () => multipart(await png()) },
  'GET /api/v1/upload/media': {},
  'DELETE /api/v1/upload/media/{file_id}': {
    sample: async ({ app, me }) => {
      const row = await app.uploads.ingest({ source: Readable.from([await png()]), ownerId: me.id, originalName: 'mine.png' })
      return { params: { file_id: row.media_id } }
    }
  },

  // permissions
  'GET /api/v1/permissions': {},
  'POST /api/v1/permissions': { sample: () => ({ payload: { codename: `matrix_${unique()}`, name: 'Matrix', category: 'matrix' } }) },
  'GET /api/v1/permissions/{permission_id}': { sample: async ({ app }) => ({ params: { permission_id: await customPermission(app) } }) },
  'PUT /api/v1/permissions/{permission_id}': { sample: async ({ app }) => ({ params: { permission_id: await customPermission(app) }, payload: { name: 'Renamed' } }) },
  'DELETE /api/v1/permissions/{permission_id}': { sample: async ({ app }) => ({ params: { permission_id: await customPermission(app) } }) },

  // groups
  'GET /api/v1/groups': {},
  'POST /api/v1/groups': { sample: () => ({ payload: { codename: `matrix_${unique()}`, name: `Matrix ${unique()}` } }) },
  'GET /api/v1/groups/{group_id}': { sample: async ({ app }) => ({ params: { group_id: (await groupWith(app, `g_${unique()}`, [])).group_id } }) },
  'PUT /api/v1/groups/{group_id}': { sample: async ({ app }) => ({ params: { group_id: (await groupWith(app, `g_${unique()}`, [])).group_id }, payload: { description: 'changed' } }) },
  'DELETE /api/v1/groups/{group_id}': { sample: async ({ app }) => ({ params: { group_id: (await groupWith(app, `g_${unique()}`, [])).group_id } }) },
  'POST /api/v1/groups/{group_id}/permissions': {
    // The caller holds edit_group, so granting it is no escalation.
    sample: async ({ app }) => ({ params: { group_id: (await groupWith(app, `g_${unique()}`, [])).group_id }, payload: { permissions: ['edit_group'] } })
  },

  // users
  'GET /api/v1/users': { sample: () => ({ query: { q: 'example', sort: 'email', order: 'asc' } }) },
  'GET /api/v1/users/me/groups': {},
  'GET /api/v1/users/me/permissions': {},
  'GET /api/v1/users/{user_id}/groups': { sample: async ({ other }) => ({ params: { user_id: (await other()).id } }) },
  'GET /api/v1/users/{user_id}/permissions': { sample: async ({ other }) => ({ params: { user_id: (await other()).id } }) },
  'POST /api/v1/users/{user_id}/groups': {
    sample: async ({ app, other }) => ({
      params: { user_id: (await other()).id },
      payload: { groups: [(await groupWith(app, `g_${unique()}`, [])).codename], action: 'add' }
    })
  },
  'DELETE /api/v1/users/{user_id}/mfa': { sample: async ({ other }) => ({ params: { user_id: (await other()).id } }) },
  'PUT /api/v1/users/{user_id}/status': { sample: async ({ other }) => ({ params: { user_id: (await other()).id }, payload: { is_active: false } }) },
  'POST /api/v1/users': { sample: () => ({ payload: { email: `new_${unique()}@example.test`, password: 'a sturdy new passphrase 9' } }) },
  'GET /api/v1/users/{user_id}': { sample: async ({ other }) => ({ params: { user_id: (await other()).id } }) },
  'PATCH /api/v1/users/{user_id}': { sample: async ({ other }) => ({ params: { user_id: (await other()).id }, payload: { first_name: 'Matrix' } }) },
  'DELETE /api/v1/users/{user_id}': { sample: async ({ other }) => ({ params: { user_id: (await other()).id } }) },
  'GET /api/v1/users/{user_id}/sessions': { sample: async ({ other }) => ({ params: { user_id: (await other()).id } }) },
  'DELETE /api/v1/users/{user_id}/sessions': { sample: async ({ other }) => ({ params: { user_id: (await other()).id } }) },
  'DELETE /api/v1/users/{user_id}/sessions/{session_id}': {
    sample: async ({ other }) => {
      const target = await other()
      return { params: { user_id: target.id, session_id: target.sessionId } }
    }
  },
  'POST /api/v1/users/{user_id}/password-reset': { sample: async ({ other }) => ({ params: { user_id: (await other()).id }, ...noBody }) },
  'POST /api/v1/users/{user_id}/unlock': { sample: async ({ other }) => ({ params: { user_id: (await other()).id } }) },
  'POST /api/v1/users/{user_id}/invitation': { sample: async ({ app }) => ({ params: { user_id: (await actor(app, { password: null })).id }, ...noBody }) },

  // activity
  'GET /api/v1/activity': {},
  'GET /api/v1/activity/me': {},
  'GET /api/v1/activity/statistics': {},
  'GET /api/v1/activity/{log_id}': {
    sample: async ({ app }) => {
      await app.activity.flush()
      const [row] = await app.db.select({ id: activityLog.log_id }).from(activityLog).limit(1)
      return { params: { log_id: row.id } }
    }
  },
  'POST /api/v1/activity': { sample: () => ({ payload: { action: 'matrix_event', module: 'matrix' } }) },
  'DELETE /api/v1/activity/cleanup': { sample: ({ app }) => ({ query: { days: String(app.config.ACTIVITY_MIN_RETENTION_DAYS) } }) },

  // dashboard
  'GET /api/v1/dashboard/overview': {},
  'GET /api/v1/dashboard/users-by-status': {},
  'GET /api/v1/dashboard/users-by-type': {},
  'GET /api/v1/dashboard/users-by-auth-type': {},
  'GET /api/v1/dashboard/users-by-country': {},
  'GET /api/v1/dashboard/users-by-language': {},
  'GET /api/v1/dashboard/user-growth': { sample: () => ({ query: { period: 'weekly', tz: 'Europe/Paris' } }) },
  'GET /api/v1/dashboard/role-statistics': {},
  'GET /api/v1/dashboard/recent-sign-ins': {},
  'GET /api/v1/dashboard/all-statistics': {}
}

interface Operation { key: string, method: string, path: string, permissions?: string[], description: string, security?: unknown }

/** `printRoutes` as (method, OpenAPI-style path) pairs: the routes the server really answers. */
function registeredRoutes (tree: string) {
  const stack: string[] = []
  const routes: string[] = []
  for (const line of tree.split('\n')) {
    const match = /^((?:[│ ] {3})*)[├└]── (.+?)(?: \(([A-Z, ]+)\))?$/.exec(line)
    if (!match) continue
    const depth = match[1].length / 4
    stack.length = depth
    const url = (stack[depth - 1] ?? '') + match[2]
    stack[depth] = url
    for (const method of match[3]?.split(', ') ?? []) routes.push(`${method} ${url.replace(/:(\w+)/g, '{$1}')}`)
  }
  return routes
}

const fill = (path: string, params: Record<string, string> = {}) =>
  path.replace(/\{(\w+)\}/g, (_whole, name: string) => params[name] ?? '00000000-0000-4000-8000-000000000000')

const app = await build(t, { ...fastEnv, METRICS_ENABLED: 'true' })
const doc = (await app.inject('/api-docs/json')).json() as { paths: Record<string, Record<string, Record<string, unknown>>> }
const operations: Operation[] = Object.entries(doc.paths).flatMap(([path, ops]) => Object.entries(ops).map(([method, op]) => ({
  key: `${method.toUpperCase()} ${path}`,
  method: method.toUpperCase(),
  path,
  permissions: op['x-permissions'] as string[] | undefined,
  description: String(op.description ?? ''),
  security: op.security
})))
const protectedOps = operations.filter((op) => op.permissions !== undefined)
const allCodenames = (await app.db.select({ codename: permission.codename }).from(permission)).map((p) => p.codename)

/** A non-system group granting exactly `codenames`, made once per distinct set. */
const groupsBySet = new Map<string, string>()
async function groupGranting (codenames: readonly string[]) {
  const key = [...codenames].sort().join(',')
  let codename = groupsBySet.get(key)
  if (!codename) {
    codename = `matrix_set_${groupsBySet.size}`
    await groupWith(app, codename, codenames)
    groupsBySet.set(key, codename)
  }
  return codename
}

t.test('the OpenAPI document lists every route, each with its access declaration (SR-24)', async (t) => {
  const documented = new Set(operations.map((op) => op.key))
  // Outside the document on purpose: automatic HEAD and CORS preflight routes, the docs themselves, Prometheus' scrape target.
  const served = registeredRoutes(app.printRoutes({ commonPrefix: false }))
    .filter((r) => !/^(HEAD|OPTIONS) /.test(r) && !/ (\/api-docs|\*|\/metrics$)/.test(r))
  for (const route of served) t.ok(documented.has(route), `${route} is in the OpenAPI document`)
  for (const key of documented) t.ok(served.includes(key), `${key} is served`)
  for (const op of operations) {
    if (op.permissions === undefined) {
      t.ok(PUBLIC.has(op.key), `${op.key} is public: it must be listed in PUBLIC`)
      // A public route may accept a credential (e.g. an OTP for the caller's own address): `{}` first says it is optional.
      if (op.security) t.same((op.security as unknown[])[0], {}, `${op.key}: a credential is optional, never required`)
      continue
    }
    t.ok(Array.isArray(op.permissions), `${op.key} x-permissions`)
    t.same(op.security, [{ oauth2: [] }, { bearerAuth: [] }, { sessionToken: [] }], `${op.key} lists the three credential schemes`)
    const line = op.permissions.length > 0 ? `Requires permission: ${op.permissions.join(', ')}.` : 'Requires a signed-in user.'
    t.ok(op.description.includes(line), `${op.key} description says "${line}"`)
    for (const codename of op.permissions) t.ok(allCodenames.includes(codename), `${op.key}: ${codename} is a seeded permission`)
  }
  for (const key of PUBLIC) t.ok(documented.has(key), `listed public route ${key} exists`)
  for (const key of Object.keys(examples)) t.ok(protectedOps.some((op) => op.key === key), `example ${key} belongs to a protected route`)
})

t.test('no token → 401 on every protected route', async (t) => {
  for (const op of protectedOps) {
    const res = await app.inject({ method: op.method as InjectOptions['method'], url: fill(op.path) })
    t.equal(res.statusCode, 401, op.key)
    t.equal(res.json().error?.code, 'AUTH_REQUIRED', `${op.key} code`)
  }
})

t.test('a user holding everything but the route\'s permissions → 403', async (t) => {
  for (const op of protectedOps.filter((o) => o.permissions!.length > 0)) {
    const lacking = await actor(app, { groups: [await groupGranting(allCodenames.filter((c) => !op.permissions!.includes(c)))] })
    const res = await app.inject({ method: op.method as InjectOptions['method'], url: fill(op.path), headers: lacking.headers })
    t.equal(res.statusCode, 403, op.key)
    t.equal(res.json().error?.code, 'FORBIDDEN', `${op.key} code`)
    t.same(res.json().error?.details?.required, op.permissions, `${op.key} names what is missing`)
  }
})

t.test('a user holding exactly the route\'s permissions → success', async (t) => {
  for (const op of protectedOps) {
    const example = examples[op.key]
    if (!example) {
      t.fail(`${op.key} has no example input in test/routes/access-matrix.test.ts: add one`)
      continue
    }
    const groups = op.permissions!.length > 0 ? [await groupGranting(op.permissions!)] : []
    const me = await actor(app, { ...example.caller, groups })
    const sample = await example.sample?.({ app, me, other: () => actor(app) }) ?? {}
    const res = await app.inject({
      method: op.method as InjectOptions['method'],
      url: fill(op.path, sample.params),
      query: sample.query,
      headers: { ...me.headers, ...sample.headers },
      ...(sample.payload === undefined ? {} : { payload: sample.payload as InjectOptions['payload'] })
    })
    t.ok(res.statusCode >= 200 && res.statusCode < 300, `${op.key} → ${res.statusCode}${res.statusCode >= 300 ? ` ${res.body.slice(0, 300)}` : ''}`)
    t.equal(res.json().success, true, `${op.key} envelope`)
  }
})
