import { adminEmail, adminPassword, type Server } from './servers.ts'

/** The requests the bench sends, built once per API process (they carry that process's tokens). */

export const API = '/api/v1'

export interface Tokens { session: string, access: string }

/** The account of the login scenarios (seedLoginUser), a plain user. */
export const loginUser = { email: 'bench-login@example.com', password: 'another bench password, long enough' }
export const loginBody = JSON.stringify({ identifier: loginUser.email, password: loginUser.password })

/** Logs the bootstrap admin in; its session and access tokens authorize the reads. */
export async function login (server: Server): Promise<Tokens> {
  const res = await fetch(`http://127.0.0.1:${server.port}${API}/auth/login-with-password`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ identifier: adminEmail, password: adminPassword })
  })
  const body = await res.json() as { success: boolean, data?: { session_token: string, access_token: string } }
  if (!res.ok || !body.data) throw new Error(`bench login failed (${res.status}): ${JSON.stringify(body)}`)
  return { session: body.data.session_token, access: body.data.access_token }
}

export const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

export interface RequestSpec {
  method?: 'GET' | 'POST' | 'PUT'
  path: string
  headers?: Record<string, string>
  body?: string
}

/** The requests of the scenarios, for one API process's tokens. */
export function requests (tokens: Tokens, now = new Date()) {
  const monthAgo = new Date(now.getTime() - 30 * 86_400_000).toISOString()
  return {
    health: { path: '/health' },
    sessionRead: { path: `${API}/settings/profile`, headers: bearer(tokens.session) },
    accessRead: { path: `${API}/settings/profile`, headers: bearer(tokens.access) },
    userList: { path: `${API}/users?limit=20`, headers: bearer(tokens.session) },
    login: { method: 'POST', path: `${API}/auth/login-with-password`, body: loginBody },
    // A POST whose handler writes no audit row: ACTIVITY_LOG_REQUESTS alone decides whether it gets an activity row.
    tokenInfo: { method: 'POST', path: `${API}/auth/token-info`, headers: bearer(tokens.session), body: '{}' },
    // A real update (one UPDATE, the cached user state refreshed) with its own audit row, written either way.
    updateTheme: { method: 'POST', path: `${API}/settings/update-theme`, headers: bearer(tokens.session), body: JSON.stringify({ theme: 'dark' }) },
    activityFirstPage: { path: `${API}/activity?limit=20`, headers: bearer(tokens.session) },
    activityFiltered: { path: `${API}/activity?module=auth&level=warning&from=${encodeURIComponent(monthAgo)}&limit=20`, headers: bearer(tokens.session) }
  } satisfies Record<string, RequestSpec>
}
