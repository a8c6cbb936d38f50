/**
 * `npm run bench:jwt`: the CPU one token verification costs, per algorithm, with and
 * without fast-jwt's verified-token cache, in this process (no server, no load
 * generator: the signature check alone). Verifiers are built with the options
 * plugins/app/auth/tokens.ts uses. BENCH_JWT_ROUNDS: verifications per cell (default
 * 20,000; uncached RS256/ES256/EdDSA are the slow ones).
 *
 * Uncached: a fresh token per verification (a resource server seeing each token once).
 * Cached: one token verified again and again (a client repeating its token).
 */
import { generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto'
import { createSigner, createVerifier } from 'fast-jwt'
import { loadConfig } from '../config.ts'
import { verifyOptions } from '../plugins/external/jwt.ts'

const rounds = Number(process.env.BENCH_JWT_ROUNDS ?? 20_000)
const config = loadConfig({ JWT_SECRET_KEY: 'bench-secret-of-at-least-thirty-two-characters' })
const pems = (type: 'ed25519' | 'ec' | 'rsa') => {
  const options = type === 'ec' ? { namedCurve: 'P-256' } : type === 'rsa' ? { modulusLength: 2048 } : {}
  const pair = generateKeyPairSync(type as 'ed25519', options as never) as unknown as { privateKey: KeyObject, publicKey: KeyObject }
  return { sign: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, verify: pair.publicKey.export({ type: 'spki', format: 'pem' }) as string }
}
const secret = config.JWT_SECRET_KEY!
const algorithms = [
  { alg: 'HS256', keys: { sign: secret, verify: secret } },
  { alg: 'EdDSA', keys: pems('ed25519') },
  { alg: 'ES256', keys: pems('ec') },
  { alg: 'RS256', keys: pems('rsa') }
] as const

const now = Math.floor(Date.now() / 1000)
const claims = () => ({ sub: randomUUID(), sid: randomUUID(), jti: randomUUID(), type: 'access', iat: now, exp: now + 3600, amr: ['pwd'], aal: 1 })

function microsPer (run: (i: number) => void, n: number): number {
  for (let i = 0; i < Math.min(1000, n); i++) run(i) // warm-up
  const started = process.cpuUsage()
  for (let i = 0; i < n; i++) run(i)
  const used = process.cpuUsage(started)
  return Math.round(((used.user + used.system) / n) * 10) / 10
}

const rows: Array<Record<string, string | number>> = []
for (const { alg, keys } of algorithms) {
  const sign = createSigner({ key: keys.sign, algorithm: alg, kid: alg === 'HS256' ? undefined : 'k1', iss: config.JWT_ISSUER, aud: config.JWT_AUDIENCE })
  const n = alg === 'HS256' ? rounds * 2 : rounds
  const tokens = Array.from({ length: n + 1000 }, () => sign(claims()))
  const signMicros = microsPer(() => sign(claims()), Math.min(n, 5000))
  const uncached = createVerifier({ key: keys.verify, algorithms: [alg], ...verifyOptions(config), cache: false })
  const cached = createVerifier({ key: keys.verify, algorithms: [alg], ...verifyOptions(config) })
  rows.push({
    algorithm: alg,
    'sign µs': signMicros,
    'verify µs, uncached': microsPer((i) => uncached(tokens[i]), n),
    'verify µs, cached (same token)': microsPer(() => cached(tokens[0]), n),
    'token bytes': tokens[0].length
  })
}
console.log(`Node ${process.version}, ${rounds} verifications per cell (HS256: twice that), process CPU per operation`)
console.table(rows)
