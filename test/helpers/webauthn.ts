import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto'

/**
 * A software WebAuthn authenticator for tests: an ES256 key pair made with Node's
 * crypto, attestation "none", and the byte layouts of the WebAuthn spec
 * (authenticatorData: rpIdHash, flags, counter, attested credential data with a
 * COSE key; the attestationObject in CBOR). It answers the JSON forms a browser's
 * PublicKeyCredential.toJSON() gives, and can be told to lie (another origin or RP
 * id, a chosen counter) to test the refusals.
 */

type Cbor = number | string | Buffer | Cbor[] | Map<Cbor, Cbor> | { [key: string]: Cbor }

/** A minimal CBOR encoder (RFC 8949): unsigned and negative integers, byte and text strings, arrays, maps. */
export function cbor (value: Cbor): Buffer {
  const head = (major: number, n: number): Buffer => {
    if (n < 24) return Buffer.from([(major << 5) | n])
    if (n < 0x100) return Buffer.from([(major << 5) | 24, n])
    if (n < 0x10000) { const b = Buffer.alloc(3); b[0] = (major << 5) | 25; b.writeUInt16BE(n, 1); return b }
    const b = Buffer.alloc(5); b[0] = (major << 5) | 26; b.writeUInt32BE(n, 1); return b
  }
  if (typeof value === 'number') return value >= 0 ? head(0, value) : head(1, -1 - value)
  if (typeof value === 'string') { const bytes = Buffer.from(value, 'utf8'); return Buffer.concat([head(3, bytes.length), bytes]) }
  if (Buffer.isBuffer(value)) return Buffer.concat([head(2, value.length), value])
  if (Array.isArray(value)) return Buffer.concat([head(4, value.length), ...value.map(cbor)])
  const entries = value instanceof Map ? [...value.entries()] : Object.entries(value)
  return Buffer.concat([head(5, entries.length), ...entries.flatMap(([k, v]) => [cbor(k), cbor(v)])])
}

const b64u = (bytes: Buffer) => bytes.toString('base64url')
const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest()

export const FLAG_UP = 0x01
export const FLAG_UV = 0x04
export const FLAG_BE = 0x08
export const FLAG_BS = 0x10
const FLAG_AT = 0x40

export interface Ceremony {
  /** The origin the "browser" reports in clientDataJSON. */
  origin?: string
  /** The RP id whose hash goes into authenticatorData. */
  rpId?: string
  /** The signature counter to report (default: the next one). */
  counter?: number
  /** Flags (default: user present and verified). */
  flags?: number
}

interface CreationOptions { challenge: string, rp: { id?: string }, user: { id: string } }
interface RequestOptions { challenge: string, rpId?: string }

export class SoftAuthenticator {
  readonly credentialId = randomBytes(32)
  private readonly privateKey: KeyObject
  private readonly publicJwk: { x: string, y: string }
  counter = 0
  userHandle: string | undefined

  constructor (readonly defaults: { origin: string, rpId: string, flags?: number }) {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    this.privateKey = privateKey
    this.publicJwk = publicKey.export({ format: 'jwk' }) as { x: string, y: string }
  }

  get id () { return b64u(this.credentialId) }

  private clientData (type: string, challenge: string, origin: string) {
    return Buffer.from(JSON.stringify({ type, challenge, origin, crossOrigin: false }))
  }

  private authData (rpId: string, flags: number, counter: number, attested?: Buffer) {
    const head = Buffer.alloc(37)
    sha256(rpId).copy(head, 0)
    head[32] = flags
    head.writeUInt32BE(counter, 33)
    return attested ? Buffer.concat([head, attested]) : head
  }

  /** Answers navigator.credentials.create() for `options` (the API's registration options). */
  create (options: CreationOptions, ceremony: Ceremony = {}) {
    const origin = ceremony.origin ?? this.defaults.origin
    const rpId = ceremony.rpId ?? options.rp.id ?? this.defaults.rpId
    const coseKey = cbor(new Map<Cbor, Cbor>([[1, 2], [3, -7], [-1, 1], [-2, Buffer.from(this.publicJwk.x, 'base64url')], [-3, Buffer.from(this.publicJwk.y, 'base64url')]]))
    const idLength = Buffer.alloc(2)
    idLength.writeUInt16BE(this.credentialId.length)
    const attested = Buffer.concat([Buffer.alloc(16), idLength, this.credentialId, coseKey])
    this.counter = ceremony.counter ?? this.counter
    const authData = this.authData(rpId, (ceremony.flags ?? this.defaults.flags ?? FLAG_UP | FLAG_UV) | FLAG_AT, this.counter, attested)
    const attestationObject = cbor({ fmt: 'none', attStmt: {}, authData })
    this.userHandle = options.user.id
    return {
      id: this.id,
      rawId: this.id,
      type: 'public-key' as const,
      response: {
        clientDataJSON: b64u(this.clientData('webauthn.create', options.challenge, origin)),
        attestationObject: b64u(attestationObject),
        transports: ['internal']
      },
      clientExtensionResults: {},
      authenticatorAttachment: 'platform'
    }
  }

  /** Answers navigator.credentials.get() for `options` (the API's sign-in options). */
  get (options: RequestOptions, ceremony: Ceremony = {}) {
    const origin = ceremony.origin ?? this.defaults.origin
    const rpId = ceremony.rpId ?? options.rpId ?? this.defaults.rpId
    const counter = ceremony.counter ?? this.counter + 1
    this.counter = Math.max(this.counter, counter)
    const authData = this.authData(rpId, ceremony.flags ?? this.defaults.flags ?? FLAG_UP | FLAG_UV, counter)
    const clientDataJSON = this.clientData('webauthn.get', options.challenge, origin)
    const signature = sign('sha256', Buffer.concat([authData, sha256(clientDataJSON)]), this.privateKey)
    return {
      id: this.id,
      rawId: this.id,
      type: 'public-key' as const,
      response: {
        clientDataJSON: b64u(clientDataJSON),
        authenticatorData: b64u(authData),
        signature: b64u(signature),
        ...(this.userHandle ? { userHandle: this.userHandle } : {})
      },
      clientExtensionResults: {},
      authenticatorAttachment: 'platform'
    }
  }
}
