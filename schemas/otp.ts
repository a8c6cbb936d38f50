import { Type, type Static } from '@sinclair/typebox'
import { literals, StrictObject } from './envelope.ts'
import { UserSchema } from './user.ts'
import { languages } from '../i18n/index.ts'
import { ref } from './ref.ts'
import { DeviceNameInput, TokenBundleSchema } from './auth.ts'

/**
 * Bodies and answers of the one-time-password, sign-up, password and contact
 * routes. Emails are lower-cased and phone numbers turned into E.164 by the
 * handlers (libphonenumber-js); a number that is not a valid international
 * number is a 400 INVALID_PHONE.
 */

export const EmailInput = Type.String({ format: 'email', minLength: 3, maxLength: 254, description: 'An email address (compared case-insensitively)' })
export const PhoneInput = Type.String({ minLength: 6, maxLength: 32, pattern: '^\\+?[0-9 ().-]+$', description: 'A phone number with its country code, e.g. +14155550123' })
export const OtpCode = Type.String({ pattern: '^[0-9]{4,10}$', description: 'The code that was sent (6 digits by default)' })
export const VerificationToken = Type.String({ minLength: 20, maxLength: 100, description: 'What verify-one-time-password returned, instead of the code' })
const NewPassword = Type.String({ minLength: 1, maxLength: 4096, description: 'The new password (8-128 characters by default; common passwords are refused)' })
const CurrentPassword = Type.String({ minLength: 1, maxLength: 4096, description: 'The current password' })
export const UserNameInput = Type.String({ pattern: '^[A-Za-z][A-Za-z0-9_.-]{2,29}$', description: '3-30 letters, digits, _ . -; starts with a letter' })

export const OtpChannel = literals(['email', 'sms', 'whatsapp'] as const, { description: 'email for an email address; sms (default) or whatsapp for a phone number' })
export const SendPurpose = literals(['signup', 'login', 'reset_password', 'verify_email', 'verify_phone'] as const, {
  description: 'verify_email and verify_phone need a signed-in caller and go to the caller\'s own address; change_email and change_phone codes come from P/settings/change-email and change-phone'
})
export const TicketPurpose = literals(['signup', 'login', 'reset_password'] as const)

const destination = {
  email: Type.Optional(EmailInput),
  phone_number: Type.Optional(PhoneInput)
}
const proof = {
  otp: Type.Optional(OtpCode),
  verification_token: Type.Optional(VerificationToken)
}

export const SendOtpBody = StrictObject({
  ...destination,
  channel: Type.Optional(OtpChannel),
  purpose: SendPurpose
}, { $id: 'SendOtpRequest', description: 'Exactly one of email or phone_number' })

export const OtpSentSchema = Type.Object({
  channel: OtpChannel,
  destination: Type.String({ description: 'The address, partly masked' }),
  expires_in: Type.Integer({ description: 'Seconds the code stays valid' }),
  resend_in: Type.Integer({ description: 'Seconds before another code can be sent to this address' })
}, { $id: 'OtpSent', description: 'Answered alike whether or not an account exists (no enumeration)' })

export const VerifyOtpBody = StrictObject({
  ...destination,
  purpose: TicketPurpose,
  otp: OtpCode
}, { $id: 'VerifyOtpRequest' })

export const OtpVerifiedSchema = Type.Object({
  verification_token: Type.String({ description: 'Single use; stands for the code in verify, login-with-otp or forget-password for the same address and purpose' }),
  purpose: TicketPurpose,
  expires_in: Type.Integer()
}, { $id: 'OtpVerified' })

export const LoginWithOtpBody = StrictObject({
  ...destination,
  ...proof,
  device_name: Type.Optional(DeviceNameInput)
}, { $id: 'LoginWithOtpRequest', description: 'email or phone_number, and the code (or a verification_token)' })

export const SignupBody = StrictObject({
  ...destination,
  ...proof,
  signup_code_sent_to: Type.Optional(literals(['email', 'phone_number'] as const, {
    description: 'With both email and phone_number: which of them received the sign-up code (that one is verified; the other gets a verification code)'
  })),
  password: Type.Optional({ ...NewPassword, description: 'Optional: without one, the account signs in with one-time passwords until P/auth/set-password gives it one' }),
  device_name: Type.Optional(DeviceNameInput),
  user_name: Type.Optional(UserNameInput),
  first_name: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
  last_name: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
  language: Type.Optional(literals(languages)),
  timezone: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'An IANA time zone, e.g. Europe/Paris' })),
  country: Type.Optional(Type.String({ pattern: '^[A-Z]{2}$', description: 'ISO 3166-1 alpha-2' }))
}, {
  $id: 'SignupRequest',
  description: 'Sign up with a code sent for the purpose signup to the email or the phone_number; may set the password in the same call. ' +
    'Both email and phone_number may be given (then signup_code_sent_to says which one the code went to): the other one starts unverified ' +
    'and gets a verify_email or verify_phone code, for P/auth/verify-email-and-phone.'
})

/** Sign-up's answer: the first session's tokens, and where a verification code went for a second address. */
export const SignupResultSchema = Type.Object({
  ...TokenBundleSchema.properties,
  code_sent_to: Type.Optional(Type.Object({
    purpose: literals(['verify_email', 'verify_phone'] as const),
    channel: OtpChannel,
    destination: Type.String({ description: 'The address, partly masked' }),
    expires_in: Type.Integer({ description: 'Seconds the code stays valid' }),
    resend_in: Type.Integer({ description: 'Seconds before another code can be sent to this address' })
  }, { description: 'Present when a second address was given and a verification code was sent to it: send that code to P/auth/verify-email-and-phone. Absent when no code could be sent (ask for one with send-one-time-password, purpose verify_email or verify_phone).' }))
}, { $id: 'SignupResult' })

export const SetPasswordBody = StrictObject({ password: NewPassword }, { $id: 'SetPasswordRequest' })

export const ChangePasswordBody = StrictObject({
  current_password: CurrentPassword,
  new_password: NewPassword
}, { $id: 'ChangePasswordRequest' })

export const ForgetPasswordBody = StrictObject({
  ...destination,
  ...proof,
  new_password: NewPassword
}, { $id: 'ForgetPasswordRequest', description: 'Reset with a code sent for the purpose reset_password' })

export const PasswordChangedSchema = Type.Object({
  revoked_sessions: Type.Integer({ description: 'Sessions signed out by the change' })
}, { $id: 'PasswordChanged' })

export const VerifyContactBody = StrictObject({
  ...destination,
  otp: OtpCode
}, { $id: 'VerifyContactRequest', description: 'Your own email (code sent for verify_email) or phone number (verify_phone)' })

export const AvailabilityBody = StrictObject({
  email: Type.Optional(EmailInput),
  phone_number: Type.Optional(PhoneInput),
  user_name: Type.Optional(UserNameInput)
}, { $id: 'AvailabilityRequest', description: 'At least one of email, phone_number, user_name' })

const Availability = Type.Object({ value: Type.String({ description: 'The normalised value' }), available: Type.Boolean() })
export const AvailabilitySchema = Type.Object({
  email: Type.Optional(Availability),
  phone_number: Type.Optional(Availability),
  user_name: Type.Optional(Availability)
}, { $id: 'Availability' })

export const ChangeEmailBody = StrictObject({
  new_email: EmailInput,
  otp: Type.Optional(OtpCode),
  current_password: Type.Optional(CurrentPassword)
}, { $id: 'ChangeEmailRequest', description: 'Without otp: sends a code to new_email (needs a login of the last minutes, or current_password). With otp: commits the change.' })

export const ChangePhoneBody = StrictObject({
  new_phone_number: PhoneInput,
  channel: Type.Optional(literals(['sms', 'whatsapp'] as const)),
  otp: Type.Optional(OtpCode),
  current_password: Type.Optional(CurrentPassword)
}, { $id: 'ChangePhoneRequest', description: 'Without otp: sends a code to new_phone_number (needs a login of the last minutes, or current_password). With otp: commits the change.' })

export const ContactChangeSchema = Type.Object({
  status: literals(['otp_sent', 'changed'] as const),
  otp: Type.Optional(ref(OtpSentSchema)),
  user: Type.Optional(ref(UserSchema))
}, { $id: 'ContactChange' })

export const otpSchemas = [
  SendOtpBody, OtpSentSchema, VerifyOtpBody, OtpVerifiedSchema, LoginWithOtpBody, SignupBody, SignupResultSchema,
  SetPasswordBody, ChangePasswordBody, ForgetPasswordBody, PasswordChangedSchema, VerifyContactBody,
  AvailabilityBody, AvailabilitySchema, ChangeEmailBody, ChangePhoneBody, ContactChangeSchema
]

/** What services return for these answers: the response schemas' own types, never restated by hand. */
export type OtpSentView = Static<typeof OtpSentSchema>
export type OtpVerifiedView = Static<typeof OtpVerifiedSchema>
export type PasswordChangedView = Static<typeof PasswordChangedSchema>
export type AvailabilityView = Static<typeof AvailabilitySchema>
export type ContactChangeView = Static<typeof ContactChangeSchema>
export type SignupResultView = Static<typeof SignupResultSchema>
