import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type, type TSchema } from '@sinclair/typebox'
import { Envelope, Uuid } from '../../../schemas/envelope.ts'
import { AppError } from '../../../schemas/errors.ts'
import { UserSchema } from '../../../schemas/user.ts'
import {
  AccountClosedSchema, DeactivateAccountBody, DeleteAccountBody, ProfileAccessibilityBody, ProfileLanguageBody, ProfileUpdateBody,
  ProfileViewSchema, SettingsSchema, ThemeBody, TimeZoneBody
} from '../../../schemas/settings.ts'
import { toPublicUser } from '../../../plugins/app/accounts/users.ts'
import { currentProfileSnapshot } from '../../../plugins/app/auth/tokens.ts'
import { bodyOptional } from '../../../plugins/app/http/envelope.ts'
import type { SettingField } from '../../../plugins/app/accounts/profiles.ts'
import { ref } from '../../../schemas/ref.ts'

const tags = ['settings']

const settings: FastifyPluginAsyncTypebox = async (fastify) => {
  const { config } = fastify

  fastify.get('/', {
    config: { permissions: ['view_profile'] },
    schema: { operationId: 'getSettings', tags, summary: 'Your settings, and the values each one accepts', response: { 200: Envelope(ref(SettingsSchema)) } }
  }, async (request, reply) => reply.ok(await fastify.profiles.settings(request.auth!.userId)))

  fastify.get('/profile', {
    config: { permissions: ['view_profile'] },
    schema: { operationId: 'getProfile', tags, summary: 'Your profile', response: { 200: Envelope(ref(UserSchema)) } }
  }, async (request, reply) => {
    const auth = request.auth!
    // A session token carries a profile snapshot; it is served while the account is unchanged since.
    const snapshot = currentProfileSnapshot(auth)
    if (snapshot) return reply.ok(snapshot)
    const row = await fastify.users.findById(auth.userId)
    if (!row) throw new AppError('USER_NOT_FOUND')
    return reply.ok(toPublicUser(row))
  })

  fastify.get('/profile/:user_id', {
    config: { permissions: ['view_profile'] },
    schema: {
      operationId: 'getUserProfile',
      tags,
      summary: 'Another user\'s profile',
      description: 'With permission view_user (or for your own id): the whole account (User), never a secret. Otherwise the public ' +
        'part (PublicProfile) of an active account whose profile_accessibility is public; a private, deactivated or unknown ' +
        'account is the same 404 USER_NOT_FOUND, so ids cannot be probed.',
      params: Type.Object({ user_id: Uuid() }),
      response: { 200: Envelope(ref(ProfileViewSchema)) }
    }
  }, async (request, reply) => reply.ok(await fastify.profiles.view(request.caller, request.params.user_id)))

  fastify.put('/profile', {
    config: { audited: true, permissions: ['edit_profile'] },
    schema: {
      operationId: 'updateProfile',
      tags,
      summary: 'Update your own profile',
      description: 'Accepts only user_name, first_name, last_name, bio, country, gender, dob, language, theme, timezone and ' +
        'profile_accessibility. Any other field (status, is_active, user_type, email, phone_number, password, groups, ...) is a ' +
        '400 VALIDATION_ERROR and nothing is written; email and phone number change through change-email and change-phone.',
      body: ref(ProfileUpdateBody),
      response: { 200: Envelope(ref(UserSchema)) }
    }
  }, async (request, reply) => {
    const user = await fastify.profiles.update(request.caller, request.body)
    // A new language already applies to this answer.
    request.userLanguage = user.language
    return reply.ok(user, { message: 'success.profile_updated' })
  })

  const setting = (url: string, operationId: string, field: SettingField, body: TSchema, summary: string) => {
    fastify.post(url, {
      config: { audited: true, permissions: ['edit_profile'] },
      schema: { operationId, tags, summary, body: ref(body), response: { 200: Envelope(ref(SettingsSchema)) } }
    }, async (request, reply) => {
      const value = (request.body as Record<SettingField, string>)[field]
      const updated = await fastify.profiles.setSetting(request.caller, field, value)
      // A new language already applies to this answer.
      request.userLanguage = updated.language
      return reply.ok(updated, { message: 'success.settings_updated' })
    })
  }
  setting('/profile-accessibility', 'setProfileAccessibility', 'profile_accessibility', ProfileAccessibilityBody, 'Who sees your profile: public (signed-in users see its public part) or private')
  setting('/profile-language', 'setLanguage', 'language', ProfileLanguageBody, 'Your language: messages of the API and of emails and text messages sent to you')
  setting('/update-theme', 'setTheme', 'theme', ThemeBody, 'Your theme: light, dark or system')
  setting('/update-timezone', 'setTimeZone', 'timezone', TimeZoneBody, 'Your time zone (an IANA name such as Europe/Paris)')

  fastify.post('/deactivate-account', {
    config: { audited: true, permissions: [] },
    preValidation: bodyOptional,
    schema: {
      operationId: 'deactivateAccount',
      tags,
      summary: 'Deactivate your account and sign out every session',
      description: 'Logging in again is refused (403 AUTH_ACCOUNT_INACTIVE) until an administrator reactivates the account ' +
        '(PUT /users/{user_id}/status). The last active super admin cannot deactivate (409 LAST_SUPER_ADMIN).',
      body: ref(DeactivateAccountBody),
      response: { 200: Envelope(ref(AccountClosedSchema)) }
    }
  }, async (request, reply) => {
    const result = await fastify.profiles.deactivate(request.caller, request.body.reason)
    return reply.ok(result, { message: 'success.account_deactivated' })
  })

  fastify.post('/delete-account', {
    config: { audited: true, permissions: [] },
    preValidation: bodyOptional,
    schema: {
      operationId: 'deleteAccount',
      tags,
      summary: 'Delete your account: personal data is erased and every session ends',
      description: `Needs a login of the last ${config.REAUTH_WINDOW_MINUTES} minutes or current_password (403 AUTH_REAUTH_REQUIRED, ` +
        '400 AUTH_CURRENT_PASSWORD_INVALID). In one transaction the account is anonymised: identifiers, names, bio, birth date, ' +
        'picture, password and preferences are cleared, sessions and group memberships deleted, and audit rows kept with their ' +
        'actor removed. Uploaded files are then deleted from storage. The email, phone number and user name are free again. ' +
        'The last active super admin cannot be deleted (409 LAST_SUPER_ADMIN).',
      body: ref(DeleteAccountBody),
      response: { 200: Envelope(ref(AccountClosedSchema)) }
    }
  }, async (request, reply) => {
    const result = await fastify.profiles.remove(request.caller, request.body.current_password)
    return reply.ok(result, { message: 'success.account_deleted' })
  })
}

export default settings
