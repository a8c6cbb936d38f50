import t from 'tap'
import { eq } from 'drizzle-orm'
import { build } from '../helpers/build.ts'
import { user } from '../../db/schema/index.ts'
import { actor, api, call, fastEnv, groupId, groupWith } from './helpers.ts'

const app = await build(t, fastEnv)
const admin = await actor(app, { groups: ['admin'] })

// A small population with distinct, searchable values (clock-independent: created_at set explicitly).
const people = [
  { email: 'ada@analytical.test', first: 'Ada', last: 'Lovelace', phone: '+14155550101', userName: 'ada_l', country: 'GB', language: 'en', created: '2024-01-01T00:00:00Z', login: '2024-06-01T00:00:00Z' },
  { email: 'grace@analytical.test', first: 'Grace', last: 'Hopper', phone: '+14155550102', userName: 'amazing.grace', country: 'US', language: 'en', created: '2024-01-02T00:00:00Z', login: null },
  { email: 'alan@computing.test', first: 'Alan', last: 'Turing', phone: '+447700900103', userName: 'enigma', country: 'GB', language: 'fr', created: '2024-01-03T00:00:00Z', login: '2024-05-01T00:00:00Z' },
  { email: 'edsger@computing.test', first: 'Edsger', last: 'Dijkstra', phone: null, userName: 'shortest_path', country: 'NL', language: 'de', created: '2024-01-04T00:00:00Z', login: '2024-07-01T00:00:00Z' },
  { email: 'percent%sign@computing.test', first: 'Per', last: 'Cent', phone: null, userName: 'percent', country: 'FR', language: 'fr', created: '2024-01-05T00:00:00Z', login: null }
]
const ids: Record<string, string> = {}
for (const p of people) {
  const a = await actor(app, { email: p.email, phone_number: p.phone ?? undefined, user_name: p.userName })
  ids[p.first] = a.id
  await app.db.update(user).set({
    first_name: p.first,
    last_name: p.last,
    country: p.country,
    language: p.language,
    created_at: new Date(p.created),
    last_login: p.login ? new Date(p.login) : null
  }).where(eq(user.user_id, a.id))
}
const list = async (query: string) => {
  const res = await call(app, 'GET', `/users?${query}`, admin)
  if (res.statusCode !== 200) throw new Error(`${query}: ${res.statusCode} ${res.body}`)
  return res.json() as { data: Array<{ user_id: string, email: string | null, first_name: string | null }>, meta: { pagination: { total: number, next_cursor: string | null, limit: number } } }
}
const firstNames = (body: Awaited<ReturnType<typeof list>>) => body.data.map((u) => u.first_name).filter((n) => n !== null)

t.test('GET P/users searches email, names, full name, phone number and user name', async (t) => {
  t.same(firstNames(await list('q=LOVELACE')), ['Ada'], 'last name, case-insensitive')
  t.same(firstNames(await list('q=grace')), ['Grace'], 'first name, email and user name')
  t.same(firstNames(await list(`q=${encodeURIComponent('Alan Tur')}`)), ['Alan'], 'full name')
  t.same(firstNames(await list('q=computing.test')).sort(), ['Alan', 'Edsger', 'Per'], 'email domain')
  t.same(firstNames(await list(`q=${encodeURIComponent('+44 7700')}`)), ['Alan'], 'phone number, typed with spaces')
  t.same(firstNames(await list('q=shortest')), ['Edsger'], 'user name')
  t.same(firstNames(await list(`q=${encodeURIComponent('%')}`)), ['Per'], '% is a literal, not a wildcard (SR-34)')
  t.same(firstNames(await list(`q=${encodeURIComponent('_')}`)).sort(), ['Ada', 'Edsger'], '_ is a literal too')
  t.same((await list(`q=${encodeURIComponent("' or 1=1 --")}`)).data, [], 'quotes are just characters')
  const body = await list('q=ada')
  t.notOk(JSON.stringify(body).includes('argon2'), 'no password hashes')
})

t.test('GET P/users filters combine', async (t) => {
  t.same(firstNames(await list('country=gb')).sort(), ['Ada', 'Alan'])
  t.same(firstNames(await list('country=GB&language=fr')), ['Alan'])
  await app.db.update(user).set({ is_active: false, status: 'inactive' }).where(eq(user.user_id, ids.Grace))
  t.same(firstNames(await list('is_active=false')), ['Grace'])
  t.same(firstNames(await list('status=inactive')), ['Grace'])
  t.notOk(firstNames(await list('status=active&limit=100')).includes('Grace'))
  await app.db.update(user).set({ is_active: true, status: 'active' }).where(eq(user.user_id, ids.Grace))
  await groupWith(app, 'pioneers', [])
  await call(app, 'POST', `/users/${ids.Ada}/groups`, admin, { groups: ['pioneers'], action: 'add' })
  t.same(firstNames(await list('group=pioneers')), ['Ada'], 'by group codename')
  t.same(firstNames(await list(`group=${await groupId(app, 'pioneers')}`)), ['Ada'], 'by group id')
  t.same((await list('group=no_such_group')).data, [])
  t.ok((await list('user_type=user&auth_type=email&limit=100')).data.length >= people.length)
  t.equal((await list('user_type=admin')).data.length, 0, 'user_type is the stored column, not the groups')
  for (const bad of ['status=zombie', 'sort=password', 'order=sideways', 'limit=0', 'limit=101', 'country=France', 'language=xx']) {
    t.equal((await call(app, 'GET', `/users?${bad}`, admin)).statusCode, 400, bad)
  }
})

t.test('GET P/users sorts and paginates with a cursor (total and next_cursor) or an offset', async (t) => {
  const scope = `q=${encodeURIComponent('.test')}`
  t.same(firstNames(await list(`${scope}&sort=created_at&order=asc`)), ['Ada', 'Grace', 'Alan', 'Edsger', 'Per'])
  const byLogin = firstNames(await list(`${scope}&sort=last_login&order=desc`))
  t.same(byLogin.slice(0, 3), ['Edsger', 'Ada', 'Alan'])
  t.same(byLogin.slice(3).sort(), ['Grace', 'Per'], 'never-logged-in last')
  t.same(firstNames(await list(`${scope}&sort=email&order=asc`)), ['Ada', 'Alan', 'Edsger', 'Grace', 'Per'])

  for (const sort of ['created_at', 'last_login', 'email']) {
    for (const order of ['asc', 'desc']) {
      const all = firstNames(await list(`${scope}&sort=${sort}&order=${order}&limit=100`))
      const walked: string[] = []
      let cursor: string | null = null
      do {
        const page = await list(`${scope}&sort=${sort}&order=${order}&limit=2${cursor ? `&cursor=${cursor}` : ''}`)
        t.equal(page.meta.pagination.total, 5)
        t.ok(page.data.length <= 2)
        walked.push(...firstNames(page))
        cursor = page.meta.pagination.next_cursor
      } while (cursor)
      t.same(walked, all, `${sort} ${order}: the cursor walk equals the full list`)
    }
  }
  const second = await list(`${scope}&sort=email&order=asc&limit=2&offset=2`)
  t.same(firstNames(second), ['Edsger', 'Grace'], 'offset')
  const page = await list(`${scope}&sort=email&limit=2`)
  const reused = await call(app, 'GET', `/users?${scope}&sort=created_at&cursor=${page.meta.pagination.next_cursor}`, admin)
  t.equal(reused.statusCode, 400, 'a cursor only works for the sort it came from')
  t.equal((await call(app, 'GET', `/users?cursor=${encodeURIComponent("'; drop table user; --")}`, admin)).statusCode, 400)
})

t.test('P/users/me/... resolve to the caller; P/users/{id}/... to that user', async (t) => {
  const me = await actor(app, { groups: ['user', 'business'] })
  const groups = await call(app, 'GET', '/users/me/groups', me)
  t.equal(groups.statusCode, 200, groups.body)
  t.same(groups.json().data.map((g: { codename: string }) => g.codename), ['business', 'user'])
  const perms = await call(app, 'GET', '/users/me/permissions', me)
  t.equal(perms.statusCode, 200)
  t.equal(perms.json().data.user_id, me.id)
  t.equal(perms.json().data.is_super_admin, false)
  const viewProfile = perms.json().data.permissions.find((p: { codename: string }) => p.codename === 'view_profile')
  t.same(viewProfile.granted_by, ['business', 'user'])

  const ofAda = await call(app, 'GET', `/users/${ids.Ada}/groups`, admin)
  t.same(ofAda.json().data.map((g: { codename: string }) => g.codename), ['pioneers', 'user'])
  t.equal((await call(app, 'GET', `/users/${ids.Ada}/permissions`, admin)).json().data.user_id, ids.Ada)
  t.equal((await call(app, 'GET', '/users/00000000-0000-4000-8000-000000000000/groups', admin)).json().error.code, 'USER_NOT_FOUND')
  t.equal((await call(app, 'GET', '/users/not-an-id/groups', admin)).statusCode, 400)
})

t.test('SR-21: an administrator disabling a user fails all of that user\'s tokens on the next request', async (t) => {
  const victim = await actor(app)
  const res = await call(app, 'PUT', `/users/${victim.id}/status`, admin, { is_active: false, reason: 'abuse report' })
  t.equal(res.statusCode, 200, res.body)
  t.match(res.json().data, { is_active: false, status: 'inactive' })
  t.equal((await call(app, 'GET', '/settings/profile', victim.access)).statusCode, 401)
  t.equal((await call(app, 'GET', '/settings/profile', victim.session)).statusCode, 401)
  t.equal((await app.inject({ method: 'POST', url: `${api}/auth/refresh-token`, payload: { refresh_token: victim.refresh } })).statusCode, 401)
  t.ok((await app.db.select().from(user).where(eq(user.user_id, victim.id)))[0].deactivated_at)

  const back = await call(app, 'PUT', `/users/${victim.id}/status`, admin, { is_active: true })
  t.match(back.json().data, { is_active: true, status: 'active' })
  const login = await app.inject({ method: 'POST', url: `${api}/auth/login-with-password`, payload: { identifier: victim.email, password: victim.password } })
  t.equal(login.statusCode, 200, 'reactivated accounts log in again')
  t.equal((await call(app, 'GET', '/settings/profile', victim.access)).statusCode, 401, 'old tokens stay revoked')
  t.equal((await call(app, 'PUT', '/users/00000000-0000-4000-8000-000000000000/status', admin, { is_active: true })).statusCode, 404)
})
