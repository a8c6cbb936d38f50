import type { FastifyInstance } from 'fastify'
import { eq, inArray } from 'drizzle-orm'
import { randomBytes } from 'node:crypto'
import { group, user, userGroup, type User } from '../../db/schema/index.ts'

export interface NewTestUser {
  email?: string
  phone_number?: string
  user_name?: string
  password?: string | null
  groups?: string[]
  is_active?: boolean
  /** A ready-made hash (e.g. legacy bcrypt) instead of hashing `password`. */
  passwordHash?: string
}

export const defaultPassword = 'correct horse battery staple'

/** Inserts a user straight into the database (with an Argon2id hash from the app's pool). */
export async function createUser (app: FastifyInstance, spec: NewTestUser = {}): Promise<User & { plainPassword: string | null }> {
  const email = spec.email ?? `user-${randomBytes(5).toString('hex')}@example.com`
  const plain = spec.password === undefined ? defaultPassword : spec.password
  const hash = spec.passwordHash ?? (plain === null ? null : await app.passwords.hash(plain))
  const [row] = await app.db.insert(user).values({
    email,
    phone_number: spec.phone_number ?? null,
    user_name: spec.user_name ?? null,
    password: hash,
    is_active: spec.is_active ?? true,
    status: spec.is_active === false ? 'inactive' : 'active',
    is_email_verified: true
  }).returning()
  const groupNames = spec.groups ?? ['user']
  if (groupNames.length > 0) {
    const groups = await app.db.select().from(group).where(inArray(group.codename, groupNames))
    await app.db.insert(userGroup).values(groups.map((g) => ({ user_id: row.user_id, group_id: g.group_id })))
  }
  return { ...row, plainPassword: plain }
}

export async function login (app: FastifyInstance, identifier: string, password = defaultPassword, headers: Record<string, string> = {}) {
  const res = await app.inject({ method: 'POST', url: '/api/v1/auth/login-with-password', payload: { identifier, password }, headers })
  if (res.statusCode !== 200) throw new Error(`login failed: ${res.statusCode} ${res.body}`)
  return res.json().data as { access_token: string, session_token: string, refresh_token: string, session_id: string, expires_in: number, user: { user_id: string } }
}

export const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

export async function setActive (app: FastifyInstance, userId: string, active: boolean) {
  await app.db.update(user).set({ is_active: active, status: active ? 'active' : 'inactive' }).where(eq(user.user_id, userId))
}
