import fp from 'fastify-plugin'
import { createCipheriv, createDecipheriv, createHash, createPublicKey, generateKeyPair, hkdfSync, randomBytes, type KeyObject } from 'node:crypto'
import { promisify } from 'node:util'
import { and, eq, gt, isNotNull, isNull, lt, or, sql } from 'drizzle-orm'
import { calculateJwkThumbprint, type JWK } from 'jose'
import type { AppConfig } from '../../../config.ts'
import type { Database } from '../../../db/client.ts'
import { signingKey, signingKeyAlgorithms, type SigningKey, type SigningKeyAlgorithm } from '../../../db/schema/index.ts'

/**
 * The asymmetric keys tokens are signed with (issue 20); the only writer of
 * `signing_key`. The plugin keeps the published set in memory for tokens.ts and
 * the JWKS route; the named functions are shared with `npm run rotate-keys`.
 *
 * - One current key for every instance: it is created (first start, a change of
 *   JWT_ALGORITHM, the schedule, rotate-keys) in a transaction holding an advisory
 *   lock, after re-reading the table under it, so instances starting together on an
 *   empty table create one key and all sign with it.
 * - Each instance re-reads the set every KEY_REFRESH_MS and when a token names a
 *   kid it does not know (at most once per UNKNOWN_KID_REFRESH_MS), so a rotation
 *   made by another instance or the CLI is picked up.
 * - A retired key stays published until `publish_until`: its retirement plus the
 *   longest token lifetime (min of max(access, session token lifetime) and the
 *   absolute session lifetime), plus KEY_REFRESH_MS (other instances may sign with
 *   it until they re-read) and a minute of clock skew. Then it leaves the JWKS and
 *   its row is deleted at the next rotation.
 * - Private keys are stored encrypted (AES-256-GCM, key from HKDF over JWT_SECRET_KEY,
 *   the kid as associated data); only the current one is decrypted, in memory.
 */
export type JwtAlgorithm = SigningKeyAlgorithm | 'HS256'
export const jwtAlgorithms: readonly JwtAlgorithm[] = [...signingKeyAlgorithms, 'HS256']

export const KEY_REFRESH_MS = 60_000
const UNKNOWN_KID_REFRESH_MS = 1000
const ROTATION_CHECK_MS = 3_600_000
const CLOCK_SKEW_MS = 60_000
const DAY_MS = 86_400_000
// Any bigint nothing else in the database takes an advisory lock on.
const SIGNING_KEY_LOCK = '6025911358813067321'

/** A public key as the JWKS lists it (RFC 7517; OKP, EC or RSA members). */
export interface PublicJwk { kty: string, kid: string, alg: string, use: 'sig', crv?: string, x?: string, y?: string, n?: string, e?: string }

/** A key as published and verified against. */
export interface PublishedKey {
  readonly kid: string
  readonly alg: SigningKeyAlgorithm
  readonly jwk: JWK
  /** PEM of the public key (what fast-jwt verifies with). */
  readonly publicPem: string
  readonly createdAt: number
  /** ms since the epoch; undefined for the current key. */
  readonly publishUntil?: number
}

/** The key tokens are signed with now. */
export interface CurrentKey extends PublishedKey { readonly privatePem: string }

/** The longest a token can live (ms), from the configuration; see the module comment. */
export function maxTokenLifetimeMs (config: Pick<AppConfig, 'ACCESS_TOKEN_EXPIRY_MINUTES' | 'SESSION_TOKEN_EXPIRY_MINUTES' | 'REFRESH_TOKEN_EXPIRY_MINUTES'>) {
  return Math.min(Math.max(config.ACCESS_TOKEN_EXPIRY_MINUTES, config.SESSION_TOKEN_EXPIRY_MINUTES), config.REFRESH_TOKEN_EXPIRY_MINUTES) * 60_000
}

export const publishMarginMs = (config: Parameters<typeof maxTokenLifetimeMs>[0]) => maxTokenLifetimeMs(config) + KEY_REFRESH_MS + CLOCK_SKEW_MS

export function deriveKeyEncryptionKey (serverSecret: string): Buffer {
  return Buffer.from(hkdfSync('sha256', serverSecret, 'signing-key', 'jwt-signing-key-encryption-v1', 32))
}

function encryptPrivateKey (kek: Buffer, kid: string, pem: string): string {
  const iv = randomBytes(12)
  const cipher = createCipheriv('aes-256-gcm', kek, iv)
  cipher.setAAD(Buffer.from(kid))
  const ciphertext = Buffer.concat([cipher.update(pem, 'utf8'), cipher.final()])
  return ['v1', iv.toString('base64url'), cipher.getAuthTag().toString('base64url'), ciphertext.toString('base64url')].join(':')
}

export class UndecryptableKeyError extends Error {
  constructor (kid: string) {
    super(`signing key ${kid} cannot be decrypted with this JWT_SECRET_KEY (it was created under another secret). ` +
      'Give every instance the same JWT_SECRET_KEY, or replace the key: npm run rotate-keys')
  }
}

function decryptPrivateKey (kek: Buffer, kid: string, stored: string): string {
  const [version, iv, tag, ciphertext] = stored.split(':')
  try {
    if (version !== 'v1' || !iv || !tag || ciphertext === undefined) throw new Error('unknown encoding')
    const decipher = createDecipheriv('aes-256-gcm', kek, Buffer.from(iv, 'base64url'))
    decipher.setAAD(Buffer.from(kid))
    decipher.setAuthTag(Buffer.from(tag, 'base64url'))
    return Buffer.concat([decipher.update(Buffer.from(ciphertext, 'base64url')), decipher.final()]).toString('utf8')
  } catch {
    throw new UndecryptableKeyError(kid)
  }
}

const generate = promisify(generateKeyPair) as (type: string, options: object) => Promise<{ publicKey: KeyObject, privateKey: KeyObject }>
const pairOptions: Record<SigningKeyAlgorithm, [string, object]> = {
  EdDSA: ['ed25519', {}],
  ES256: ['ec', { namedCurve: 'P-256' }],
  RS256: ['rsa', { modulusLength: 2048 }]
}

/** A new key pair as a row: the kid is the public key's RFC 7638 thumbprint. */
async function newKeyRow (alg: SigningKeyAlgorithm, kek: Buffer, createdAt: Date) {
  const [type, options] = pairOptions[alg]
  const { publicKey, privateKey } = await generate(type, options)
  const bare = publicKey.export({ format: 'jwk' }) as JWK
  const kid = await calculateJwkThumbprint(bare)
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string
  return { kid, alg, public_jwk: { ...bare, kid, alg, use: 'sig' }, private_key: encryptPrivateKey(kek, kid, pem), created_at: createdAt }
}

export interface KeyPolicy {
  /** JWT_ALGORITHM: HS256 means no asymmetric key is current. */
  algorithm: JwtAlgorithm
  /** 0: never rotated by age. */
  rotationDays: number
  /** How long a retired key stays published (publishMarginMs). */
  publishMarginMs: number
  kek: Buffer
}

export type KeyChange = 'created' | 'rotated' | 'retired' | 'unchanged'

/**
 * Makes the table agree with `policy` at `now`, once across instances (advisory lock,
 * decided after re-reading under it): a current key of the configured algorithm,
 * younger than the rotation period (or any age with `force`: a new one either way).
 * With HS256 the current key is retired. Rows no longer published are deleted.
 */
export async function reconcileKeys (db: Database, policy: KeyPolicy, now: Date, force = false): Promise<KeyChange> {
  const wantsKey = policy.algorithm !== 'HS256'
  const due = (current: SigningKey | undefined) => {
    if (current === undefined) return wantsKey
    if (force || !wantsKey || current.alg !== policy.algorithm) return true
    return policy.rotationDays > 0 && now.getTime() - current.created_at.getTime() >= policy.rotationDays * DAY_MS
  }
  // The common case (nothing due) costs one indexed read and takes no lock.
  const [seen] = await db.select().from(signingKey).where(isNull(signingKey.retired_at))
  if (!due(seen)) return 'unchanged'
  // Generated before the lock: RSA takes tens of milliseconds.
  const fresh = wantsKey ? await newKeyRow(policy.algorithm as SigningKeyAlgorithm, policy.kek, now) : undefined
  return await db.transaction(async (tx) => {
    await tx.execute(sql`select pg_advisory_xact_lock(${SIGNING_KEY_LOCK}::bigint)`)
    const [current] = await tx.select().from(signingKey).where(isNull(signingKey.retired_at))
    // Another instance may have done it meanwhile: decided again under the lock. A
    // forced rotation still counts as done when the key changed since it was asked for.
    if (!due(current) || (force && current !== undefined && current.kid !== seen?.kid)) return 'unchanged'
    await tx.delete(signingKey).where(and(isNotNull(signingKey.publish_until), lt(signingKey.publish_until, now)))
    if (current !== undefined) {
      await tx.update(signingKey)
        .set({ retired_at: now, publish_until: new Date(now.getTime() + policy.publishMarginMs) })
        .where(eq(signingKey.kid, current.kid))
    }
    if (!fresh) return 'retired'
    await tx.insert(signingKey).values(fresh)
    return current === undefined ? 'created' : 'rotated'
  })
}

/** The keys published at `now`: the current one and the retired ones still within publish_until. */
export async function publishedKeys (db: Database, now: Date): Promise<SigningKey[]> {
  return await db.select().from(signingKey)
    .where(or(isNull(signingKey.publish_until), gt(signingKey.publish_until, now)))
    .orderBy(sql`${signingKey.created_at} desc`)
}

export function keyPolicy (config: AppConfig): KeyPolicy {
  return {
    algorithm: config.JWT_ALGORITHM,
    rotationDays: config.JWT_KEY_ROTATION_DAYS,
    publishMarginMs: publishMarginMs(config),
    kek: deriveKeyEncryptionKey(config.JWT_SECRET_KEY!)
  }
}

export interface SigningKeys {
  /** The key to sign with; undefined with JWT_ALGORITHM=HS256 (tokens use the secret). */
  current: () => CurrentKey | undefined
  /** A published key by kid, from memory. */
  get: (kid: string) => PublishedKey | undefined
  /** A published key by kid, re-reading the table first when it is unknown (a rotation made elsewhere). */
  find: (kid: string) => Promise<PublishedKey | undefined>
  /** The JWK Set (RFC 7517) and its ETag. */
  jwks: () => { keys: PublicJwk[], etag: string }
  /** Re-reads the table. */
  refresh: () => Promise<void>
  /** Applies the policy now (start, schedule); `force` rotates whatever the age. */
  reconcile: (force?: boolean) => Promise<KeyChange>
}

declare module 'fastify' {
  interface FastifyInstance { signingKeys: SigningKeys }
}

export default fp(async (fastify) => {
  const { db, config, log } = fastify
  const policy = keyPolicy(config)
  const now = () => fastify.now()

  let published = new Map<string, PublishedKey>()
  let current: CurrentKey | undefined
  let document: { keys: PublicJwk[], etag: string } = { keys: [], etag: '""' }

  async function refresh () {
    const rows = await publishedKeys(db, new Date(now()))
    const next = new Map<string, PublishedKey>()
    let nextCurrent: CurrentKey | undefined
    for (const row of rows) {
      const jwk = row.public_jwk as JWK
      const publicPem = createPublicKey({ key: jwk as Record<string, string>, format: 'jwk' }).export({ type: 'spki', format: 'pem' }) as string
      const key: PublishedKey = { kid: row.kid, alg: row.alg, jwk, publicPem, createdAt: row.created_at.getTime(), publishUntil: row.publish_until?.getTime() }
      next.set(row.kid, key)
      if (row.retired_at === null && config.JWT_ALGORITHM !== 'HS256') {
        // Decrypted once per key, not per refresh.
        nextCurrent = current?.kid === row.kid ? current : { ...key, privatePem: decryptPrivateKey(policy.kek, row.kid, row.private_key) }
      }
    }
    published = next
    current = nextCurrent
    const keys = rows.map((r) => r.public_jwk as unknown as PublicJwk)
    document = { keys, etag: `"${createHash('sha256').update(JSON.stringify(keys)).digest('base64url').slice(0, 27)}"` }
  }

  // Unknown kids: one re-read at a time, at most one per UNKNOWN_KID_REFRESH_MS; a
  // request that comes sooner waits for the next one (so a key created a moment after
  // the last re-read is still found), and forged kids cost no more than that.
  let lastUnknownRefresh = 0
  let pending: Promise<void> | undefined
  function refreshForUnknownKid (): Promise<void> {
    pending ??= (async () => {
      const wait = lastUnknownRefresh + UNKNOWN_KID_REFRESH_MS - Date.now()
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
      lastUnknownRefresh = Date.now()
      await refresh()
    })().finally(() => { pending = undefined })
    return pending
  }

  const live = (key: PublishedKey | undefined) => key !== undefined && (key.publishUntil === undefined || key.publishUntil > now()) ? key : undefined

  async function reconcile (force = false) {
    const change = await reconcileKeys(db, policy, new Date(now()), force)
    if (change !== 'unchanged') log.info({ signingKey: change, algorithm: policy.algorithm }, 'signing keys changed')
    await refresh()
    return change
  }

  fastify.decorate('signingKeys', {
    current: () => current,
    get: (kid) => live(published.get(kid)),
    find: async (kid) => {
      const known = live(published.get(kid))
      if (known) return known
      if (kid.length > 100) return undefined
      await refreshForUnknownKid()
      return live(published.get(kid))
    },
    jwks: () => document,
    refresh,
    reconcile
  } satisfies SigningKeys)

  // At start, before the server takes requests: a key exists (all instances the same).
  await reconcile()
  const every = (ms: number, what: string, run: () => Promise<unknown>) => {
    const timer = setInterval(() => { run().catch((error: unknown) => log.warn({ err: error }, `${what} failed; retried next round`)) }, ms)
    timer.unref()
    fastify.addHook('onClose', async () => clearInterval(timer))
  }
  every(KEY_REFRESH_MS, 'signing key refresh', refresh)
  every(ROTATION_CHECK_MS, 'signing key rotation check', () => reconcile())
}, { name: 'signing-keys', dependencies: ['db'] })
