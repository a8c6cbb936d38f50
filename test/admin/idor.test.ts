import t from 'tap'
import { Readable } from 'node:stream'
import { eq } from 'drizzle-orm'
import { build } from '../helpers/build.ts'
import { png } from '../upload/samples.ts'
import { media, session } from '../../db/schema/index.ts'
import { actor, call, fastEnv, groupId, userRow } from './helpers.ts'

t.test('SR-25: user A cannot read or change user B\'s data by putting B\'s ids in the path, query or body', async (t) => {
  const app = await build(t, fastEnv)
  const a = await actor(app)
  const b = await actor(app)
  await call(app, 'PUT', '/settings/profile', b, { first_name: 'Bea', profile_accessibility: 'private' })
  const bFile = await app.uploads.ingest({ source: Readable.from([await png()]), ownerId: b.id, originalName: 'b.png' })
  const bBefore = await userRow(app, b.id)
  const adminGroup = await groupId(app, 'admin')

  const denied: Array<[string, string, unknown, number]> = [
    ['GET', `/settings/profile/${b.id}`, undefined, 404],
    ['GET', `/users/${b.id}/groups`, undefined, 403],
    ['GET', `/users/${b.id}/permissions`, undefined, 403],
    ['POST', `/users/${b.id}/groups`, { groups: [adminGroup], action: 'add' }, 403],
    ['PUT', `/users/${b.id}/status`, { is_active: false }, 403],
    ['GET', `/users?q=${encodeURIComponent(b.email)}`, undefined, 403],
    ['DELETE', `/auth/sessions/${b.sessionId}`, undefined, 404],
    ['DELETE', `/upload/media/${bFile.media_id}`, undefined, 404],
    ['PUT', '/settings/profile', { user_id: b.id, first_name: 'Hacked' }, 400],
    ['POST', '/settings/update-theme', { theme: 'dark', user_id: b.id }, 400],
    ['POST', '/settings/deactivate-account', { user_id: b.id }, 400],
    ['POST', '/settings/delete-account', { user_id: b.id }, 400]
  ]
  for (const [method, url, body, status] of denied) {
    const res = await call(app, method as 'GET', url, a, body)
    t.equal(res.statusCode, status, `${method} ${url} → ${status}`)
  }

  // Ids in the query string are not honoured by routes that work on the caller.
  const own = await call(app, 'GET', `/settings/profile?user_id=${b.id}`, a)
  t.equal(own.json().data.user_id, a.id, 'GET /settings/profile?user_id=B is still A\'s profile')
  t.equal((await call(app, 'GET', `/users/me/groups?user_id=${b.id}`, a)).statusCode, 200)
  t.equal((await call(app, 'GET', `/settings?user_id=${b.id}`, a)).json().data.profile_accessibility, 'public', 'A\'s settings, not B\'s')
  const info = await call(app, 'POST', '/auth/token-info', a, { token: b.access })
  t.equal(info.json().data.active, false, 'B\'s token inspected by A reveals nothing')

  t.same(await userRow(app, b.id), bBefore, 'B is unchanged')
  t.equal((await call(app, 'GET', '/settings/profile', b)).statusCode, 200, 'B\'s session still works')
  t.equal((await app.db.select().from(session).where(eq(session.session_id, b.sessionId)))[0].revoked_at, null)
  t.equal((await app.db.select().from(media).where(eq(media.media_id, bFile.media_id))).length, 1, 'B\'s file is still there')
  t.equal((await call(app, 'GET', '/users/me/groups', b)).json().data.length, 1, 'B\'s groups unchanged')
})
