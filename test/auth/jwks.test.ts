import t, { type Test } from 'tap'
import { createHmac } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { createRemoteJWKSet, exportPKCS8, generateKeyPair, jwtVerify, SignJWT } from 'jose'
import { createSigner } from 'fast-jwt'
import { count, isNull } from 'drizzle-orm'
import type { FastifyInstance } from 'fastify'
import { signingKey } from '../../db/schema/index.ts'
import { loadConfig } from '../../config.ts'
import { buildContext, testSecret } from '../helpers/build.ts'
import { bearer, createUser, login } from '../helpers/users.ts'
import { decodeJwt } from '../helpers/tokens.ts'

// issue 20, verifiable tokens: tokens signed with a key pair kept in the database,
// published at /.well-known/jwks.json, rotated, shared by every instance.

const protectedUrl = '/api/v1/settings/profile'
const issuer = 'fastify-auth-backend'
const audience = 'fastify-auth-backend-api'
const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')

async function listen (t: Test, app: FastifyInstance): Promise<string> {
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => app.close())
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
}

/** A clock the test moves: every instance built with it reads `Date.now() + offset`. */
function movableClock () {
  const clock = { offset: 0, now: () => Date.now() + clock.offset }
  return clock
}

t.test('jose verifies access tokens with /.well-known/jwks.json only; after a rotation old tokens still verify and new ones carry the new kid', async (t) => {
  const { app } = await buildContext(t)
  const base = await listen(t, app)
  const u = await createUser(app)
  const first = await login(app, u.email!)
  const { header } = decodeJwt(first.access_token)
  t.equal(header.alg, 'EdDSA', 'EdDSA by default')
  t.type(header.kid, 'string', 'the token names its key')

  const discovery = await fetch(`${base}/.well-known/openid-configuration`)
  t.equal(discovery.status, 200)
  const doc = await discovery.json() as Record<string, unknown>
  t.notOk('success' in doc, 'a standard document, not the API envelope')
  t.match(doc, { issuer, jwks_uri: `${base}/.well-known/jwks.json`, token_endpoint: `${base}/api/v1/token`, id_token_signing_alg_values_supported: ['EdDSA'] })

  const res = await fetch(doc.jwks_uri as string)
  t.equal(res.status, 200)
  t.match(res.headers.get('cache-control'), /max-age=300/)
  t.equal(res.headers.get('x-content-type-options'), 'nosniff', 'the security headers still apply')
  const etag = res.headers.get('etag')!
  const jwks = await res.json() as { keys: Array<Record<string, unknown>> }
  t.notOk('success' in jwks, 'the raw JWK Set')
  t.equal(jwks.keys.length, 1)
  t.match(jwks.keys[0], { kid: header.kid, alg: 'EdDSA', kty: 'OKP', crv: 'Ed25519', use: 'sig' })
  t.notOk('d' in jwks.keys[0], 'no private part')
  t.equal((await fetch(doc.jwks_uri as string, { headers: { 'if-none-match': etag } })).status, 304, 'ETag revalidation')

  // A resource server: nothing but the JWKS URL.
  const remote = createRemoteJWKSet(new URL(doc.jwks_uri as string), { cooldownDuration: 0 })
  const verified = await jwtVerify(first.access_token, remote, { issuer, audience })
  t.equal(verified.payload.sub, u.user_id)
  t.equal(verified.payload.type, 'access')

  t.equal(await app.signingKeys.reconcile(true), 'rotated')
  const second = await login(app, u.email!)
  const newKid = decodeJwt(second.access_token).header.kid
  t.not(newKid, header.kid, 'new tokens carry the new kid')
  t.equal((await jwtVerify(second.access_token, remote, { issuer, audience })).protectedHeader.kid, newKid, 'jose fetched the new key by itself')
  t.equal((await jwtVerify(first.access_token, remote, { issuer, audience })).payload.sub, u.user_id, 'the old token still verifies')
  const after = await (await fetch(doc.jwks_uri as string)).json() as { keys: Array<{ kid: string }> }
  t.same(after.keys.map((k) => k.kid).sort(), [header.kid, newKid].sort(), 'both keys published')
  t.equal((await fetch(doc.jwks_uri as string, { headers: { 'if-none-match': etag } })).status, 200, 'a new ETag')
  for (const token of [first.access_token, second.access_token, first.session_token]) {
    t.equal((await app.inject({ url: protectedUrl, headers: bearer(token) })).statusCode, 200)
  }
})

t.test('two instances on one database sign with the same key, also when both start at once on an empty table, and follow a rotation made by the other', async (t) => {
  const ctx = await buildContext(t)
  await ctx.app.db.delete(signingKey)
  const [a, b] = await Promise.all([ctx.another(), ctx.another()])
  const [{ n }] = await a.db.select({ n: count() }).from(signingKey)
  t.equal(n, 1, 'one key created')
  t.ok(a.signingKeys.current())
  t.equal(a.signingKeys.current()?.kid, b.signingKeys.current()?.kid, 'the same current kid')

  const u = await createUser(a)
  const fromA = await login(a, u.email!)
  const fromB = await login(b, u.email!)
  t.equal(decodeJwt(fromA.access_token).header.kid, decodeJwt(fromB.access_token).header.kid)
  t.equal((await b.inject({ url: protectedUrl, headers: bearer(fromA.access_token) })).statusCode, 200, "B accepts A's token")

  // Rotated on A; B still has the old key in memory, meets a token of the new one.
  t.equal(await a.signingKeys.reconcile(true), 'rotated')
  const rotated = await login(a, u.email!)
  const newKid = decodeJwt(rotated.access_token).header.kid
  t.not(newKid, b.signingKeys.current()?.kid, 'B has not re-read yet')
  t.equal((await b.inject({ url: protectedUrl, headers: bearer(rotated.access_token) })).statusCode, 200, 'B looks the unknown kid up')
  t.equal(b.signingKeys.current()?.kid, newKid, 'and signs with the new key from then on')
  t.equal((await b.inject({ url: protectedUrl, headers: bearer(fromB.access_token) })).statusCode, 200, 'its own older token still works')
  const [{ current }] = await a.db.select({ current: count() }).from(signingKey).where(isNull(signingKey.retired_at))
  t.equal(current, 1, 'one current key')
  // The schedule does nothing while the key is young, on either instance.
  t.equal(await b.signingKeys.reconcile(), 'unchanged')
})

t.test('the schedule rotates once across instances; a retired key leaves the JWKS when its last token has expired', async (t) => {
  const clock = movableClock()
  const env = { JWT_KEY_ROTATION_DAYS: '30', ACCESS_TOKEN_EXPIRY_MINUTES: '60', SESSION_TOKEN_EXPIRY_MINUTES: '120' }
  const ctx = await buildContext(t, env, { now: clock.now })
  const b = await ctx.another()
  const u = await createUser(ctx.app)
  const old = await login(ctx.app, u.email!)
  const oldKid = decodeJwt(old.access_token).header.kid as string

  clock.offset = 31 * 86_400_000
  const changes = await Promise.all([ctx.app.signingKeys.reconcile(), b.signingKeys.reconcile()])
  t.same(changes.sort(), ['rotated', 'unchanged'], 'one instance rotated, the other found it done')
  await ctx.app.signingKeys.refresh()
  t.not(ctx.app.signingKeys.current()?.kid, oldKid)
  t.ok(ctx.app.signingKeys.get(oldKid), 'the old key is still published')

  // Past the longest token lifetime (120 min) plus the margins: unpublished.
  clock.offset += 125 * 60_000
  await ctx.app.signingKeys.refresh()
  const { keys } = ctx.app.signingKeys.jwks()
  t.same(keys.map((k) => k.kid), [ctx.app.signingKeys.current()?.kid], 'only the current key is left')
  const res = await ctx.app.inject({ url: protectedUrl, headers: bearer(old.access_token) })
  t.equal(res.statusCode, 401, 'a token of an unpublished key is refused')
  t.equal(res.json().error.code, 'AUTH_INVALID_TOKEN')
})

t.test('SR-17: a token signed by an unpublished key, or with another algorithm than its key\'s, is a 401', async (t) => {
  const { app } = await buildContext(t)
  const u = await createUser(app)
  const tokens = await login(app, u.email!)
  const { header, claims } = decodeJwt(tokens.access_token)
  const kid = header.kid as string
  const stranger = await generateKeyPair('EdDSA', { extractable: true })
  const strangerPem = await exportPKCS8(stranger.privateKey)
  const publicPem = app.signingKeys.get(kid)!.publicPem
  const hmac = (key: string, head: object) => {
    const input = `${b64(head)}.${b64(claims)}`
    return `${input}.${createHmac('sha256', key).update(input).digest('base64url')}`
  }
  const cases: Record<string, string> = {
    'another key, our kid': await new SignJWT(claims).setProtectedHeader({ alg: 'EdDSA', kid }).sign(stranger.privateKey),
    'another key, its own kid': createSigner({ key: strangerPem, algorithm: 'EdDSA', kid: 'not-published' })(claims),
    'HS256 keyed with our public key (alg confusion)': hmac(publicPem, { alg: 'HS256', typ: 'JWT', kid }),
    'HS256 keyed with our public JWK text': hmac(JSON.stringify(app.signingKeys.get(kid)!.jwk), { alg: 'HS256', typ: 'JWT', kid }),
    'alg none with our kid': `${b64({ alg: 'none', typ: 'JWT', kid })}.${b64(claims)}.`,
    'kid of another type': `${b64({ alg: 'EdDSA', typ: 'JWT', kid: 7 })}.${b64(claims)}.${tokens.access_token.split('.')[2]}`
  }
  for (const [name, token] of Object.entries(cases)) {
    const res = await app.inject({ url: protectedUrl, headers: bearer(token) })
    t.equal(res.statusCode, 401, name)
    t.equal(res.json().error.code, 'AUTH_INVALID_TOKEN', name)
  }
  t.equal((await app.inject({ url: protectedUrl, headers: bearer(tokens.access_token) })).statusCode, 200, 'the genuine token works')
})

t.test('JWT_ALGORITHM=HS256 still works and publishes nothing', async (t) => {
  const { app } = await buildContext(t, { JWT_ALGORITHM: 'HS256' })
  const u = await createUser(app)
  const tokens = await login(app, u.email!)
  t.same(decodeJwt(tokens.access_token).header, { alg: 'HS256', typ: 'JWT' })
  t.equal((await app.inject({ url: protectedUrl, headers: bearer(tokens.access_token) })).statusCode, 200)
  t.equal((await app.inject({ url: protectedUrl, headers: bearer(tokens.session_token) })).statusCode, 200)
  t.same((await app.inject({ url: '/.well-known/jwks.json' })).json(), { keys: [] })
  t.match((await app.inject({ url: '/.well-known/openid-configuration' })).json(), { id_token_signing_alg_values_supported: ['HS256'] })
})

t.test('switching HS256 -> EdDSA keeps earlier HS256 tokens valid until they expire; EdDSA -> HS256 keeps the key\'s tokens', async (t) => {
  const clock = movableClock()
  const ctx = await buildContext(t, { JWT_ALGORITHM: 'HS256' }, { now: clock.now })
  const u = await createUser(ctx.app)
  const before = await login(ctx.app, u.email!)
  const { claims } = decodeJwt(before.access_token)

  const eddsa = await ctx.another({ JWT_ALGORITHM: 'EdDSA' })
  const after = await login(eddsa, u.email!)
  t.equal(decodeJwt(after.access_token).header.alg, 'EdDSA')
  t.equal((await eddsa.inject({ url: protectedUrl, headers: bearer(before.access_token) })).statusCode, 200, 'an HS256 token of before the switch')
  t.equal((await eddsa.inject({ url: protectedUrl, headers: bearer(before.session_token) })).statusCode, 200, 'an HS256 session token too')

  const hs = createSigner({ key: testSecret, algorithm: 'HS256' })
  const past = Math.floor(Date.now() / 1000) - 7200
  const expired = await eddsa.inject({ url: protectedUrl, headers: bearer(hs({ ...claims, iat: past, exp: past + 3600 })) })
  t.equal(expired.statusCode, 401, 'until it expires')
  t.equal(expired.json().error.code, 'AUTH_TOKEN_EXPIRED')
  clock.offset = 10 * 60_000
  const issuedLater = hs({ ...claims, iat: Math.floor(Date.now() / 1000) + 300, exp: Math.floor(Date.now() / 1000) + 3600 })
  t.equal((await eddsa.inject({ url: protectedUrl, headers: bearer(issuedLater) })).statusCode, 401, 'an HS256 token issued after the switch is refused')

  // And back: the key is retired, its tokens keep verifying until they expire.
  const back = await ctx.another({ JWT_ALGORITHM: 'HS256' })
  t.equal(back.signingKeys.current(), undefined, 'no key pair in use')
  t.equal((await back.inject({ url: protectedUrl, headers: bearer(after.access_token) })).statusCode, 200, 'an EdDSA token of before the switch back')
  const jwks = (await back.inject({ url: '/.well-known/jwks.json' })).json() as { keys: Array<{ kid: string }> }
  t.same(jwks.keys.map((k) => k.kid), [decodeJwt(after.access_token).header.kid], 'still published')
})

t.test('discovery URLs: PUBLIC_URL, else the request\'s host; X-Forwarded-Host/-Proto only from a TRUST_PROXY proxy', async (t) => {
  const ctx = await buildContext(t)
  const discovery = (app: FastifyInstance, remoteAddress = '127.0.0.1') => app.inject({
    url: '/.well-known/openid-configuration',
    remoteAddress,
    headers: { host: 'api.internal:3000', 'x-forwarded-host': 'auth.example.com', 'x-forwarded-proto': 'https' }
  }).then((res) => res.json() as { jwks_uri: string, token_endpoint: string })
  t.equal((await discovery(ctx.app)).jwks_uri, 'http://api.internal:3000/.well-known/jwks.json', 'no trusted proxy: its headers are ignored')
  const proxied = await ctx.another({ TRUST_PROXY: '10.0.0.0/8' })
  t.equal((await discovery(proxied, '10.1.2.3')).jwks_uri, 'https://auth.example.com/.well-known/jwks.json', 'from a trusted proxy')
  t.equal((await discovery(proxied, '192.0.2.9')).jwks_uri, 'http://api.internal:3000/.well-known/jwks.json', 'not from an untrusted one')
  const fixed = await ctx.another({ PUBLIC_URL: 'https://id.example.org/auth', MODE: 'v2' })
  t.match(await discovery(fixed), { jwks_uri: 'https://id.example.org/auth/.well-known/jwks.json', token_endpoint: 'https://id.example.org/auth/v2/token' })
  t.throws(() => loadConfig({ PUBLIC_URL: 'https://id.example.org/' }), /PUBLIC_URL/, 'no trailing slash')
})

t.test('an instance whose JWT_SECRET_KEY cannot decrypt the current key refuses to start instead of signing tokens nobody accepts', async (t) => {
  const ctx = await buildContext(t)
  const kid = ctx.app.signingKeys.current()!.kid
  // REDIS_URL unset (in-process store): a start that fails after the store plugin leaves
  // its Redis connection open, which would hold this test process (seen on the postgres stack).
  await t.rejects(ctx.another({ JWT_SECRET_KEY: 'another-secret-of-at-least-thirty-two-characters', REDIS_URL: '' }), new RegExp(`signing key ${kid} cannot be decrypted`))
  const [{ n }] = await ctx.app.db.select({ n: count() }).from(signingKey)
  t.equal(n, 1, 'and replaced nothing')
})
