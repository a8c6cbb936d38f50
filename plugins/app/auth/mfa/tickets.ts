import { createHash, randomBytes } from 'node:crypto'
import type { KeyValueStore as Store } from '../../../external/store.ts'
import type { LoginMethod } from '../login.ts'

/**
 * MFA tickets (not a plugin): what a login of an account with a factor answers
 * instead of tokens. Opaque, random, kept in the shared store by digest for
 * TICKET_TTL_SECONDS, single use, and good for MAX_TICKET_ATTEMPTS wrong codes.
 */
export const TICKET_TTL_SECONDS = 300
export const MAX_TICKET_ATTEMPTS = 5

export interface MfaRequired {
  mfa_required: true
  mfa_ticket: string
  expires_in: number
  factors: Array<'totp' | 'recovery_code'>
}

export interface TicketClaims { userId: string, method: LoginMethod, amr: string[], /** the login's device_name */ deviceName?: string }

const keyOf = (ticket: string) => `mfa:t:${createHash('sha256').update(ticket).digest('base64url')}`

export async function issueTicket (store: Store, claims: TicketClaims): Promise<MfaRequired> {
  const ticket = randomBytes(32).toString('base64url')
  await store.set(keyOf(ticket), JSON.stringify(claims), TICKET_TTL_SECONDS * 1000)
  return { mfa_required: true, mfa_ticket: ticket, expires_in: TICKET_TTL_SECONDS, factors: ['totp', 'recovery_code'] }
}

/** The claims of a live ticket; undefined when unknown or expired. */
export async function readTicket (store: Store, ticket: string): Promise<TicketClaims | undefined> {
  if (ticket.length > 128) return undefined
  const raw = await store.get(keyOf(ticket))
  return raw === null ? undefined : JSON.parse(raw) as TicketClaims
}

/** Counts a wrong code; the ticket dies with its last allowed attempt. */
export async function ticketFailed (store: Store, ticket: string) {
  const key = keyOf(ticket)
  const failures = await store.incr(`${key}:f`, TICKET_TTL_SECONDS * 1000)
  if (failures >= MAX_TICKET_ATTEMPTS) await store.del(key, `${key}:f`)
}

/** Spends the ticket; false when another request spent it first. */
export async function spendTicket (store: Store, ticket: string) {
  const key = keyOf(ticket)
  const spent = (await store.del(key)) > 0
  await store.del(`${key}:f`)
  return spent
}
