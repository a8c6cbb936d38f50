import fp from 'fastify-plugin'
import { createHmac } from 'node:crypto'
import { generateAuthenticationOptions, verifyAuthenticationResponse, type AuthenticationResponseJSON, type PublicKeyCredentialRequestOptionsJSON } from '@simplewebauthn/server'
import { isoBase64URL } from '@simplewebauthn/server/helpers'
import type { Passkey } from '../../../../db/schema/index.ts'
import { relyingParty } from '../../../../config.ts'
import { AppError } from '../../../../schemas/errors.ts'
import { normalizeIdentifier } from '../../accounts/contact.ts'
import type { Caller } from '../caller.ts'
import { needsSecondFactor } from '../login.ts'
import type { TokenBundle } from '../tokens.ts'
import { challengeBytes, issueChallenge, signedChallenge, takeChallenge } from './challenges.ts'

/**
 * Passwordless sign-in with a passkey (`P/auth/passkeys/login/*`): options, then the
 * assertion, then the usual tokens through `login.complete` with `amr: ["webauthn"]`
 * at aal 2 (a verified passkey is possession plus the authenticator's PIN or
 * biometrics), so an account with TOTP gets its tokens without the MFA ticket.
 *
 * With an identifier, the options list that account's passkeys and the challenge
 * only accepts one of them; an identifier that names no account (or one without
 * passkeys) gets the same shape, with a decoy credential id derived from it, so the
 * answer does not tell whether the account exists (SR-8). Without an identifier
 * the browser offers the discoverable passkeys it holds for the site (usernameless).
 *
 * The signature counter is checked here, after the signature: a counter that does
 * not increase (when either side is non-zero) means a cloned authenticator; it is
 * refused and audited as critical. Passkey failures do not count towards the
 * password lockout (a credential id is not secret: anyone could lock an account
 * out), and a passkey sign-in works while a password lockout runs and clears it.
 */
export interface PasskeySignInService {
  options: (caller: Caller, identifier?: string) => Promise<PublicKeyCredentialRequestOptionsJSON>
  complete: (caller: Caller, credential: AuthenticationResponseJSON) => Promise<TokenBundle>
}

declare module 'fastify' {
  interface FastifyInstance { passkeySignIn: PasskeySignInService }
}

export default fp(async (fastify) => {
  const { config, login, passkeys, store, throttle, users } = fastify
  const rp = relyingParty(config)
  const ttl = config.WEBAUTHN_CHALLENGE_TTL_SECONDS
  const decoyKey = createHmac('sha256', config.JWT_SECRET_KEY!).update('passkey-decoy-credential-v1').digest()
  const decoyId = (canonical: string) => createHmac('sha256', decoyKey).update(canonical).digest('base64url')

  async function options (caller: Caller, identifier?: string) {
    // null: any discoverable passkey may answer; '' (no account with passkeys): none may.
    let userId: string | null = null
    let allowCredentials: Array<{ id: string, transports?: string[] }> | undefined
    if (identifier !== undefined) {
      const canonical = (normalizeIdentifier(identifier)?.value ?? identifier.trim()).toLowerCase()
      await throttle.limit('passkey-id', canonical, config.AUTH_RATE_LIMIT_PER_IDENTIFIER, 60_000)
      const found = await users.findByIdentifier(identifier)
      const rows = found ? await passkeys.listForUser(found.user_id) : []
      userId = found && rows.length > 0 ? found.user_id : ''
      allowCredentials = rows.length > 0
        ? rows.map((row) => ({ id: row.credential_id, transports: row.transports }))
        : [{ id: decoyId(canonical), transports: ['internal', 'hybrid'] }]
    }
    const challenge = await issueChallenge(store, { purpose: 'login', userId }, ttl)
    return generateAuthenticationOptions({ rpID: rp.id, allowCredentials, challenge: challengeBytes(challenge), timeout: ttl * 1000, userVerification: 'required' })
  }

  /** Audits the failed sign-in and answers the one error every failure shares. */
  async function refused (caller: Caller, reason: string, row?: Passkey, detail?: string) {
    await fastify.audit(caller, {
      action: 'login_failed',
      level: 'warning',
      userId: null,
      targetUserId: row?.user_id ?? null,
      metadata: { method: 'webauthn', reason, ...(row ? { passkey_id: row.passkey_id } : {}), ...(detail ? { detail: detail.slice(0, 200) } : {}) }
    })
    return new AppError('PASSKEY_INVALID')
  }

  async function complete (caller: Caller, credential: AuthenticationResponseJSON) {
    const challenge = signedChallenge(credential.response.clientDataJSON)
    const claims = await takeChallenge(store, challenge, 'login')
    if (!challenge || !claims) throw new AppError('PASSKEY_CHALLENGE_INVALID')
    const row = await passkeys.findByCredentialId(credential.id)
    if (!row) throw await refused(caller, 'unknown_credential')
    if (claims.userId !== null && claims.userId !== row.user_id) throw await refused(caller, 'not_allowed_for_identifier', row)
    const userHandle = credential.response.userHandle
    if (userHandle && userHandle !== row.user_handle) throw await refused(caller, 'user_handle_mismatch', row)
    let result
    try {
      result = await verifyAuthenticationResponse({
        response: credential,
        expectedChallenge: challenge,
        expectedOrigin: rp.origins,
        expectedRPID: rp.id,
        // Counter 0 here: the library would compare it before the signature; it is compared below, after.
        credential: { id: row.credential_id, publicKey: isoBase64URL.toBuffer(row.public_key), counter: 0, transports: row.transports },
        requireUserVerification: true
      })
    } catch (error) {
      throw await refused(caller, 'verification_failed', row, (error as Error).message)
    }
    if (!result.verified) throw await refused(caller, 'bad_signature', row)
    const { newCounter, credentialBackedUp } = result.authenticationInfo
    if ((newCounter > 0 || row.counter > 0) && newCounter <= row.counter) {
      await fastify.audit(caller, {
        action: 'passkey_counter_regression',
        module: 'passkeys',
        level: 'critical',
        userId: null,
        targetUserId: row.user_id,
        message: 'A passkey answered with a signature counter that did not increase: possibly a cloned authenticator',
        metadata: { passkey_id: row.passkey_id, stored_counter: row.counter, received_counter: newCounter }
      })
      throw await refused(caller, 'counter_regression', row)
    }
    // Compare-and-set on the counter: of two assertions carrying one counter value, one wins.
    if (!(await passkeys.recordUse(row, { counter: newCounter, backedUp: credentialBackedUp }))) throw await refused(caller, 'concurrent_use', row)
    const account = await users.findById(row.user_id)
    if (!account) throw await refused(caller, 'unknown_account', row)
    const outcome = await login.complete(caller, account, {
      method: 'webauthn',
      lockout: `user:${account.user_id}`,
      metadata: { passkey_id: row.passkey_id, backed_up: credentialBackedUp },
      assurance: { amr: ['webauthn'], aal: 2 }
    })
    // aal 2 always opens the session.
    if (needsSecondFactor(outcome)) throw new AppError('INTERNAL_ERROR')
    return outcome
  }

  fastify.decorate('passkeySignIn', { options, complete })
}, { name: 'passkey-sign-in', dependencies: ['passkeys', 'login', 'store', 'throttle', 'users', 'activity'] })
