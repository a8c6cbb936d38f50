import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import formbody from '@fastify/formbody'
import { AppError } from '../../schemas/errors.ts'
import { toAppError } from '../../plugins/app/http/errors.ts'
import { needsSecondFactor } from '../../plugins/app/auth/login.ts'
import { DeviceNameInput } from '../../schemas/auth.ts'

/**
 * `P/token`: the OAuth2 password grant (RFC 6749 §4.3), so Swagger UI's Authorize
 * button and OAuth2 clients can log in. It is the one route outside the envelope:
 * success and failure bodies are the RFC's. Swagger UI's `Authorization: Basic`
 * header with an empty client id is ignored.
 */
const OAuthError = Type.Object({
  error: Type.String(),
  error_description: Type.String(),
  mfa_ticket: Type.Optional(Type.String({ description: 'error mfa_required (403) only: complete the login with P/auth/mfa/challenge' })),
  expires_in: Type.Optional(Type.Integer({ description: 'error mfa_required only: seconds the ticket stays valid' }))
}, { description: 'RFC 6749 §5.2 error' })

const token: FastifyPluginAsyncTypebox = async (fastify) => {
  await fastify.register(formbody, { bodyLimit: 16 * 1024 })

  // Errors of this context speak OAuth2, not the envelope.
  fastify.setErrorHandler((raw, request, reply) => {
    const error = toAppError(raw)
    if (error.statusCode >= 500) {
      request.log.error({ err: raw }, 'token endpoint error')
      if (error.code !== 'SERVICE_UNAVAILABLE') fastify.reportError(raw, request)
    }
    const grantError = error.code === 'AUTH_INVALID_CREDENTIALS' || error.code === 'AUTH_ACCOUNT_INACTIVE' || error.code === 'AUTH_ACCOUNT_LOCKED'
    const oauthCode = (raw as { oauthCode?: string }).oauthCode ??
      (grantError ? 'invalid_grant' : error.statusCode >= 500 ? 'server_error' : error.code === 'RATE_LIMITED' ? 'slow_down' : 'invalid_request')
    if (error.retryAfter !== undefined) reply.header('Retry-After', String(Math.ceil(error.retryAfter)))
    const status = error.statusCode === 429 || error.statusCode >= 500 ? error.statusCode : error.code === 'AUTH_INVALID_CREDENTIALS' ? 400 : error.statusCode
    return reply.code(status).header('Cache-Control', 'no-store').header('Pragma', 'no-cache')
      .send({ error: oauthCode, error_description: request.t(`errors.${error.code}`, error.params) })
  })

  fastify.post('/token', {
    config: { audited: true, public: true, rateLimit: { max: fastify.config.AUTH_RATE_LIMIT_PER_IP, timeWindow: 60_000 } },
    schema: {
      operationId: 'issueOAuthToken',
      tags: ['auth'],
      summary: 'OAuth2 password grant (used by Swagger UI\'s Authorize button)',
      description: 'Takes a form or JSON body and answers RFC 6749 bodies (`{ error, error_description }` on failure); other clients use login-with-password. ' +
        'An account with a second factor gets 403 `{ error: "mfa_required", mfa_ticket }`: complete the login with P/auth/mfa/challenge and ' +
        'paste its access token into Authorize → bearerAuth.',
      consumes: ['application/x-www-form-urlencoded', 'application/json'],
      body: Type.Object({
        grant_type: Type.String({ description: 'Must be "password"' }),
        username: Type.String({ minLength: 1, maxLength: 320, description: 'Email, phone number or user name' }),
        password: Type.String({ minLength: 1, maxLength: 4096 }),
        scope: Type.Optional(Type.String({ maxLength: 200 })),
        client_id: Type.Optional(Type.String({ maxLength: 200 })),
        client_secret: Type.Optional(Type.String({ maxLength: 200 })),
        device_name: Type.Optional(DeviceNameInput)
      }),
      response: {
        200: Type.Object({
          access_token: Type.String(),
          token_type: Type.Literal('bearer'),
          expires_in: Type.Integer(),
          refresh_token: Type.String(),
          session_token: Type.String(),
          session_id: Type.String({ format: 'uuid' })
        }),
        '4xx': OAuthError,
        '5xx': OAuthError
      }
    }
  }, async (request, reply) => {
    if (request.body.grant_type !== 'password') {
      throw Object.assign(new AppError('BAD_REQUEST', { details: { grant_type: request.body.grant_type } }), { oauthCode: 'unsupported_grant_type' })
    }
    const bundle = await fastify.login.withPassword(request.caller, request.body.username, request.body.password, 'oauth_password', { deviceName: request.body.device_name })
    if (needsSecondFactor(bundle)) {
      return reply.code(403).header('Cache-Control', 'no-store').header('Pragma', 'no-cache').send({
        error: 'mfa_required',
        error_description: request.t('success.mfa_required'),
        mfa_ticket: bundle.mfa_ticket,
        expires_in: bundle.expires_in
      })
    }
    return reply.header('Pragma', 'no-cache').send({
      access_token: bundle.access_token,
      token_type: 'bearer' as const,
      expires_in: bundle.expires_in,
      refresh_token: bundle.refresh_token,
      session_token: bundle.session_token,
      session_id: bundle.session_id
    })
  })
}

export default token
