import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto'

/**
 * Keys and encodings of the MFA module (not a plugin: autoload skips this file).
 * TOTP secrets are encrypted with AES-256-GCM under a key derived with HKDF-SHA-256
 * from the server secret (JWT_SECRET_KEY); the user id is the associated data, so a
 * ciphertext copied to another account does not decrypt. Recovery codes are high
 * entropy and kept as HMAC-SHA-256 digests under a second derived key.
 */
export interface MfaKeys { encryption: Buffer, recovery: Buffer }

export function deriveKeys (serverSecret: string): MfaKeys {
  const derive = (info: string) => Buffer.from(hkdfSync('sha256', serverSecret, 'mfa', info, 32))
  return { encryption: derive('totp-secret-encryption-v1'), recovery: derive('recovery-code-digest-v1') }
}

export function encryptSecret (keys: MfaKeys, userId: string, secret: string): string {
  const iv = randomBytes(12)
  const cipher = createCipheriv('aes-256-gcm', keys.encryption, iv)
  cipher.setAAD(Buffer.from(userId))
  const ciphertext = Buffer.concat([cipher.update(secret, 'utf8'), cipher.final()])
  return ['v1', iv.toString('base64url'), cipher.getAuthTag().toString('base64url'), ciphertext.toString('base64url')].join(':')
}

export function decryptSecret (keys: MfaKeys, userId: string, stored: string): string {
  const [version, iv, tag, ciphertext] = stored.split(':')
  if (version !== 'v1' || !iv || !tag || ciphertext === undefined) throw new Error('unknown MFA secret encoding')
  const decipher = createDecipheriv('aes-256-gcm', keys.encryption, Buffer.from(iv, 'base64url'))
  decipher.setAAD(Buffer.from(userId))
  decipher.setAuthTag(Buffer.from(tag, 'base64url'))
  return Buffer.concat([decipher.update(Buffer.from(ciphertext, 'base64url')), decipher.final()]).toString('utf8')
}

const RECOVERY_ALPHABET = 'abcdefghjkmnpqrstuvwxyz23456789'

/** A recovery code as shown: `xxxxx-xxxxx` (about 49 bits). */
export function newRecoveryCode (): string {
  const bytes = randomBytes(10)
  const chars = [...bytes].map((b) => RECOVERY_ALPHABET[b % RECOVERY_ALPHABET.length])
  return `${chars.slice(0, 5).join('')}-${chars.slice(5).join('')}`
}

/** What a typed recovery code is compared as: lower case, without spaces and dashes. */
export const normalizeRecoveryCode = (code: string) => code.toLowerCase().replace(/[\s-]/g, '')

export function recoveryDigest (keys: MfaKeys, userId: string, code: string): string {
  return createHmac('sha256', keys.recovery).update(`${userId}:${normalizeRecoveryCode(code)}`).digest('base64url')
}
