import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Envelope } from '../../../schemas/envelope.ts'
import { AppError } from '../../../schemas/errors.ts'
import { LoginResultSchema } from '../../../schemas/auth.ts'
import { UserSchema } from '../../../schemas/user.ts'
import {
  AvailabilityBody, AvailabilitySchema, LoginWithOtpBody, OtpSentSchema, OtpVerifiedSchema, SendOtpBody,
  VerifyContactBody, VerifyOtpBody
} from '../../../schemas/otp.ts'
import { requirePhone } from '../../../plugins/app/auth/otp.ts'
import { normalizeEmail } from '../../../plugins/app/accounts/contact.ts'
import { needsSecondFactor } from '../../../plugins/app/auth/login.ts'
import { ref } from '../../../schemas/ref.ts'

const tags = ['auth']

const otpRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  const { config } = fastify
  const perIp = { max: config.AUTH_RATE_LIMIT_PER_IP, timeWindow: 60_000 }

  fastify.post('/send-one-time-password', {
    // Public, but verify_email / verify_phone are for the signed-in caller's own address.
    config: { audited: true, public: true, auth: 'optional', rateLimit: perIp },
    schema: {
      operationId: 'sendOneTimePassword',
      tags,
      summary: 'Send a one-time password to an email (email) or a phone (sms, whatsapp)',
      description: 'The answer is the same whether or not an account uses the address: for login and reset_password an unknown ' +
        'address gets nothing; for signup a taken address gets a notice instead of a code. One code per address every ' +
        `${config.OTP_RESEND_COOLDOWN_SECONDS} s (429 OTP_COOLDOWN) and ${config.OTP_DAILY_LIMIT} a day (429 OTP_DAILY_LIMIT); ` +
        'a new code replaces the previous one. verify_email and verify_phone need a signed-in caller (send its token) ' +
        'and go to its own address. A message that could not be sent is a 502 OTP_DELIVERY_FAILED.',
      body: ref(SendOtpBody),
      response: { 200: Envelope(ref(OtpSentSchema)) }
    }
  }, async (request, reply) => {
    const sent = await fastify.credentials.sendCode(request.caller, request.body)
    return reply.ok(sent, { message: 'success.otp_sent' })
  })

  fastify.post('/verify-one-time-password', {
    config: { audited: true, public: true, rateLimit: perIp },
    schema: {
      operationId: 'verifyOneTimePassword',
      tags,
      summary: 'Check a one-time password (consumes it) and get a verification token',
      description: 'The single-use verification_token stands for the code in verify (signup), login-with-otp (login) or ' +
        `forget-password (reset_password), for the same address, during ${config.OTP_TTL_SECONDS} s. Any failure is OTP_INVALID.`,
      body: ref(VerifyOtpBody),
      response: { 200: Envelope(ref(OtpVerifiedSchema)) }
    }
  }, async (request, reply) => {
    const body = request.body
    const ticket = await fastify.credentials.verifyCode(request.caller, body)
    return reply.ok({ ...ticket, purpose: body.purpose }, { message: 'success.otp_verified' })
  })

  fastify.post('/login-with-otp', {
    config: { audited: true, public: true, rateLimit: perIp },
    schema: {
      operationId: 'loginWithOneTimePassword',
      tags,
      summary: 'Passwordless login with a code sent for the purpose login',
      description: 'Takes the code (or a verification_token from verify-one-time-password) and answers the same tokens as a password login ' +
        '(or, for an account with a second factor, the same MFA ticket).',
      body: ref(LoginWithOtpBody),
      response: { 200: Envelope(ref(LoginResultSchema)) }
    }
  }, async (request, reply) => {
    const outcome = await fastify.credentials.loginWithOtp(request.caller, request.body)
    return reply.ok(outcome, { message: needsSecondFactor(outcome) ? 'success.mfa_required' : 'success.login' })
  })

  fastify.post('/verify-email-and-phone', {
    config: { audited: true, permissions: [], rateLimit: perIp },
    schema: {
      operationId: 'verifyEmailAndPhone',
      tags,
      summary: 'Mark your email or phone number verified with a code (purpose verify_email or verify_phone)',
      body: ref(VerifyContactBody),
      response: { 200: Envelope(ref(UserSchema)) }
    }
  }, async (request, reply) => {
    const account = await fastify.credentials.verifyContact(request.caller, request.body)
    return reply.ok(account, { message: 'success.contact_verified' })
  })

  fastify.post('/check-user-availability', {
    config: { public: true, rateLimit: perIp },
    schema: {
      operationId: 'checkUserAvailability',
      tags,
      summary: 'Is an email, phone number or user name free?',
      description: `Tells whether an account uses each value, which is its purpose; limited to ${config.AVAILABILITY_RATE_LIMIT_PER_IP} requests per IP per minute.`,
      body: ref(AvailabilityBody),
      response: { 200: Envelope(ref(AvailabilitySchema)) }
    }
  }, async (request, reply) => {
    const body = request.body
    // The tight budget lives in the shared store and fails closed, so no instance or outage widens it.
    await fastify.throttle.limit('availability', request.ip, config.AVAILABILITY_RATE_LIMIT_PER_IP, 60_000)
    const query = {
      ...(body.email !== undefined ? { email: normalizeEmail(body.email) } : {}),
      ...(body.phone_number !== undefined ? { phone_number: requirePhone(body.phone_number) } : {}),
      ...(body.user_name !== undefined ? { user_name: body.user_name } : {})
    }
    if (Object.keys(query).length === 0) throw new AppError('VALIDATION_ERROR', { details: [{ field: 'body', message: 'send email, phone_number or user_name' }] })
    const free = await fastify.accounts.availability(query)
    const answer = Object.fromEntries(Object.entries(query).map(([field, value]) => [field, { value, available: free[field as keyof typeof free] === true }]))
    return reply.ok(answer, { message: 'success.availability' })
  })
}

export default otpRoutes
