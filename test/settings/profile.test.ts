import t from 'tap'
import { eq } from 'drizzle-orm'
import { build } from '../helpers/build.ts'
import { setActive } from '../helpers/users.ts'
import { userGroup } from '../../db/schema/index.ts'
import { actor, call, fastEnv, groupWith, userRow } from '../admin/helpers.ts'

t.test('GET P/settings/profile and P/settings answer the caller\'s own data', async (t) => {
  const app = await build(t, fastEnv)
  const me = await actor(app)
  const profile = await call(app, 'GET', '/settings/profile', me)
  t.equal(profile.statusCode, 200)
  t.equal(profile.json().data.user_id, me.id)
  t.notOk('password' in profile.json().data, 'no password field')
  const settings = await call(app, 'GET', '/settings', me)
  t.equal(settings.statusCode, 200)
  t.match(settings.json().data, { language: 'en', theme: 'system', timezone: 'UTC', profile_accessibility: 'public', has_password: true })
  t.same(settings.json().data.available.themes, ['light', 'dark', 'system'])
  t.ok(settings.json().data.available.languages.includes('ar'))
})

t.test('PUT P/settings/profile writes the allow-listed fields in canonical form; the session token snapshot follows', async (t) => {
  const app = await build(t, fastEnv)
  const me = await actor(app)
  const before = await userRow(app, me.id)
  const snapshot = await call(app, 'GET', '/settings/profile', me.session)
  t.equal(snapshot.json().data.first_name, null)

  const res = await call(app, 'PUT', '/settings/profile', me, {
    user_name: 'ada_l',
    first_name: '  Ada ',
    last_name: 'Lovelace',
    bio: 'Analyst.\nEngine enthusiast.',
    country: 'gb',
    gender: 'female',
    dob: '1915-12-10',
    language: 'fr',
    theme: 'dark',
    timezone: 'europe/london',
    profile_accessibility: 'private'
  })
  t.equal(res.statusCode, 200, res.body)
  t.match(res.json().data, {
    user_name: 'ada_l',
    first_name: 'Ada',
    last_name: 'Lovelace',
    country: 'GB',
    gender: 'female',
    dob: '1915-12-10',
    language: 'fr',
    theme: 'dark',
    timezone: 'Europe/London',
    profile_accessibility: 'private'
  })
  t.equal(res.json().message, 'Profil mis à jour', 'the new language applies to this very answer')
  const after = await userRow(app, me.id)
  t.ok(after.last_updated.getTime() >= before.last_updated.getTime())
  t.equal(after.email, before.email, 'email untouched')

  const fresh = await call(app, 'GET', '/settings/profile', me.session)
  t.equal(fresh.json().data.first_name, 'Ada', 'the old session token no longer serves its stale snapshot')

  const cleared = await call(app, 'PUT', '/settings/profile', me, { bio: null, gender: null })
  t.equal(cleared.statusCode, 200)
  t.equal(cleared.json().data.bio, null)
  t.equal(cleared.json().data.gender, null)
})

t.test('profile values are validated: time zones (IANA), languages (catalogs), themes, countries, dates, user names', async (t) => {
  const app = await build(t, fastEnv)
  const me = await actor(app)
  const other = await actor(app)
  await call(app, 'PUT', '/settings/profile', other, { user_name: 'taken_name' })
  const bad: Array<[Record<string, unknown>, string]> = [
    [{ timezone: 'Mars/Phobos' }, 'VALIDATION_ERROR'],
    [{ timezone: '+05:00' }, 'VALIDATION_ERROR'],
    [{ timezone: 'Europe/Paris; drop table user' }, 'VALIDATION_ERROR'],
    [{ language: 'xx' }, 'VALIDATION_ERROR'],
    [{ language: null }, 'VALIDATION_ERROR'],
    [{ theme: 'neon' }, 'VALIDATION_ERROR'],
    [{ profile_accessibility: 'friends' }, 'VALIDATION_ERROR'],
    [{ country: 'ZZ' }, 'VALIDATION_ERROR'],
    [{ country: 'EU' }, 'VALIDATION_ERROR'],
    [{ country: 'FRA' }, 'VALIDATION_ERROR'],
    [{ dob: '2999-01-01' }, 'VALIDATION_ERROR'],
    [{ dob: '2001-02-30' }, 'VALIDATION_ERROR'],
    [{ dob: '1850-01-01' }, 'VALIDATION_ERROR'],
    [{ first_name: 'A\u0000B' }, 'VALIDATION_ERROR'],
    [{ first_name: 'x'.repeat(101) }, 'VALIDATION_ERROR'],
    [{ user_name: 'has space' }, 'VALIDATION_ERROR'],
    [{ user_name: 'a@b.c' }, 'VALIDATION_ERROR'],
    [{ user_name: 'TAKEN_NAME' }, 'USER_NAME_TAKEN'],
    [{}, 'VALIDATION_ERROR']
  ]
  const before = await userRow(app, me.id)
  for (const [body, code] of bad) {
    const res = await call(app, 'PUT', '/settings/profile', me, body)
    t.equal(res.json().error?.code, code, `${JSON.stringify(body)} → ${code}`)
  }
  t.same(await userRow(app, me.id), before, 'nothing was written')
})

t.test('SR-26: a profile update carrying status, activity, type, email, phone, password or groups is refused and nothing is written', async (t) => {
  const app = await build(t, fastEnv)
  const me = await actor(app)
  const victim = await actor(app)
  const before = await userRow(app, me.id)
  const groupsBefore = await app.db.select().from(userGroup).where(eq(userGroup.user_id, me.id))
  const forbidden: Record<string, unknown> = {
    is_active: false,
    status: 'deleted',
    user_type: 'super_admin',
    email: 'new@example.com',
    phone_number: '+14155550100',
    password: 'a brand new password',
    groups: ['super_admin'],
    is_email_verified: false,
    is_phone_verified: true,
    auth_type: 'phone',
    permission_version: 0,
    user_id: victim.id,
    created_at: '2000-01-01T00:00:00Z',
    deleted_at: '2000-01-01T00:00:00Z',
    profile_picture_url: 'https://evil.example/x.png'
  }
  for (const [field, value] of Object.entries(forbidden)) {
    const res = await call(app, 'PUT', '/settings/profile', me, { first_name: 'Mallory', [field]: value })
    t.equal(res.statusCode, 400, `${field} is refused`)
    t.equal(res.json().error.code, 'VALIDATION_ERROR')
  }
  const all = await call(app, 'PUT', '/settings/profile', me, { first_name: 'Mallory', ...forbidden })
  t.equal(all.statusCode, 400, 'all of them together too')
  t.same(await userRow(app, me.id), before, 'not even the allowed first_name was written')
  t.same(await app.db.select().from(userGroup).where(eq(userGroup.user_id, me.id)), groupsBefore, 'memberships unchanged')
  t.equal((await userRow(app, victim.id)).first_name, null, 'the other user (by body id) untouched')

  // The single-setting routes are strict as well.
  const sneaky = await call(app, 'POST', '/settings/update-theme', me, { theme: 'dark', is_active: false })
  t.equal(sneaky.statusCode, 400)
  t.same(await userRow(app, me.id), before)
})

t.test('the one-setting routes validate and save one value each', async (t) => {
  const app = await build(t, fastEnv)
  const me = await actor(app)
  const cases: Array<[string, string, string, string, string]> = [
    ['/settings/profile-accessibility', 'profile_accessibility', 'private', 'private', 'secret'],
    ['/settings/profile-language', 'language', 'de', 'de', 'klingon'],
    ['/settings/update-theme', 'theme', 'light', 'light', 'blue'],
    ['/settings/update-timezone', 'timezone', 'america/new_york', 'America/New_York', 'Nowhere/Town']
  ]
  for (const [url, field, value, stored, wrong] of cases) {
    const ok = await call(app, 'POST', url, me, { [field]: value })
    t.equal(ok.statusCode, 200, `${url} ${ok.body}`)
    t.equal(ok.json().data[field], stored)
    t.equal((await userRow(app, me.id))[field as 'theme'], stored, 'saved')
    const refused = await call(app, 'POST', url, me, { [field]: wrong })
    t.equal(refused.statusCode, 400, `${url} refuses ${wrong}`)
    t.equal((await userRow(app, me.id))[field as 'theme'], stored, 'unchanged')
  }
  const settings = await call(app, 'GET', '/settings', me)
  t.match(settings.json().data, { language: 'de', theme: 'light', timezone: 'America/New_York', profile_accessibility: 'private' })
  t.equal(settings.headers['content-language'], 'de', 'the saved language is used for answers')
})

t.test('another user\'s profile honours profile_accessibility; view_user sees more, never secrets', async (t) => {
  const app = await build(t, fastEnv)
  const viewer = await actor(app)
  const pub = await actor(app)
  const priv = await actor(app)
  const gone = await actor(app)
  await call(app, 'PUT', '/settings/profile', pub, { first_name: 'Pia', bio: 'hello', dob: '1990-01-01', user_name: 'pia' })
  await call(app, 'PUT', '/settings/profile', priv, { first_name: 'Priv', profile_accessibility: 'private' })
  await setActive(app, gone.id, false)

  const seen = await call(app, 'GET', `/settings/profile/${pub.id}`, viewer)
  t.equal(seen.statusCode, 200)
  t.same(Object.keys(seen.json().data).sort(), ['bio', 'country', 'first_name', 'last_name', 'profile_accessibility', 'profile_picture_url', 'user_id', 'user_name'])
  t.equal(seen.json().data.first_name, 'Pia')

  const unknown = await call(app, 'GET', '/settings/profile/00000000-0000-4000-8000-000000000000', viewer)
  t.equal(unknown.statusCode, 404)
  for (const hidden of [priv, gone]) {
    const res = await call(app, 'GET', `/settings/profile/${hidden.id}`, viewer)
    t.equal(res.statusCode, 404, 'private and inactive profiles look like unknown ones')
    t.equal(res.json().error.code, unknown.json().error.code)
  }
  t.equal((await call(app, 'GET', '/settings/profile/not-a-uuid', viewer)).statusCode, 400)

  const own = await call(app, 'GET', `/settings/profile/${priv.id}`, priv)
  t.equal(own.json().data.email, priv.email, 'your own id shows your whole account')

  await groupWith(app, 'profile_readers', ['view_profile', 'view_user'])
  const staff = await actor(app, { groups: ['profile_readers'] })
  const full = await call(app, 'GET', `/settings/profile/${priv.id}`, staff)
  t.equal(full.statusCode, 200)
  t.equal(full.json().data.email, priv.email, 'view_user sees the private profile in full')
  t.equal(full.json().data.has_password, true)
  t.notOk(/password"\s*:\s*"|argon2|\$2[aby]\$/.test(full.body), 'never a password or hash')
  t.equal((await call(app, 'GET', `/settings/profile/${gone.id}`, staff)).statusCode, 200, 'and inactive accounts')
})
