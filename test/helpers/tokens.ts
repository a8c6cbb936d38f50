import { createSigner } from 'fast-jwt'
import type { FastifyInstance } from 'fastify'
import { testSecret } from './build.ts'

/**
 * Signs `payload` the way `app` signs its tokens: with its current key pair (and its
 * kid), or with HS256 and the test secret when it runs JWT_ALGORITHM=HS256. Tests that
 * forge tokens with chosen claims use it, so the claim checks are tested on the path
 * real tokens take.
 */
export function signAs (app: FastifyInstance, payload: Record<string, unknown>): string {
  const key = app.signingKeys.current()
  if (key === undefined) return createSigner({ key: testSecret, algorithm: 'HS256' })(payload)
  return createSigner({ key: key.privatePem, algorithm: key.alg, kid: key.kid })(payload)
}

/** The decoded header and claims of a compact JWT (nothing verified). */
export function decodeJwt (token: string): { header: Record<string, unknown>, claims: Record<string, unknown> } {
  const [header, claims] = token.split('.').slice(0, 2).map((part) => JSON.parse(Buffer.from(part, 'base64url').toString()) as Record<string, unknown>)
  return { header, claims }
}
