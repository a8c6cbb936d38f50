import { randomBytes } from 'node:crypto'
import type { KeyValueStore as Store } from '../../../external/store.ts'

/**
 * WebAuthn challenges (not a plugin: autoload skips this file). Random 32 bytes,
 * kept in the shared store for WEBAUTHN_CHALLENGE_TTL_SECONDS with what they were
 * issued for: a registration (bound to the account that asked) or a sign-in
 * (bound to the account named by the identifier, or to none: usernameless). The
 * verify step finds its challenge in the signed clientDataJSON and takes it with
 * one GETDEL, before any verification, so a challenge works once even under
 * concurrent use and a failed attempt burns it.
 */
export type ChallengePurpose = 'register' | 'login'

export interface ChallengeClaims {
  purpose: ChallengePurpose
  /** register: the account adding a passkey; login: the account the identifier named, or null. */
  userId: string | null
}

const CHALLENGE = /^[A-Za-z0-9_-]{16,128}$/
const keyOf = (challenge: string) => `passkey:c:${challenge}`

export async function issueChallenge (store: Store, claims: ChallengeClaims, ttlSeconds: number): Promise<string> {
  const challenge = randomBytes(32).toString('base64url')
  await store.set(keyOf(challenge), JSON.stringify(claims), ttlSeconds * 1000)
  return challenge
}

/** The challenge's bytes, as the option generators take them (a string would be taken as UTF-8 text). */
export const challengeBytes = (challenge: string) => new Uint8Array(Buffer.from(challenge, 'base64url'))

/** Spends the challenge; its claims when it was live and issued for `purpose`, undefined otherwise. */
export async function takeChallenge (store: Store, challenge: string | undefined, purpose: ChallengePurpose): Promise<ChallengeClaims | undefined> {
  if (challenge === undefined || !CHALLENGE.test(challenge)) return undefined
  const raw = await store.take(keyOf(challenge))
  if (raw === null) return undefined
  const claims = JSON.parse(raw) as ChallengeClaims
  return claims.purpose === purpose ? claims : undefined
}

/** The challenge a client signed, read from its clientDataJSON (base64url JSON); undefined when unreadable. */
export function signedChallenge (clientDataJSON: string): string | undefined {
  try {
    const data = JSON.parse(Buffer.from(clientDataJSON, 'base64url').toString('utf8')) as { challenge?: unknown }
    return typeof data.challenge === 'string' ? data.challenge : undefined
  } catch {
    return undefined
  }
}
