import t from 'tap'
import { build } from '../helpers/build.ts'
import { lastCode } from '../helpers/otp.ts'
import { createApiClient } from '../../clients/typescript/index.ts'

// The generated client (clients/typescript) against a listening app: what a consumer
// of the document does. The compiler checks the calls against the document too.
t.test('the generated client drives sign-up, login, profile, refresh and logout', async (t) => {
  const app = await build(t)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  const api = createApiClient({ baseUrl: `http://127.0.0.1:${port}` })
  const email = 'client-flow@example.com'
  const password = 'Generated-client-pass-42'

  const sent = await api.POST('/api/v1/auth/send-one-time-password', { body: { email, purpose: 'signup' } })
  t.equal(sent.response.status, 200, 'a sign-up code is sent')

  const signup = await api.POST('/api/v1/auth/verify', { body: { email, otp: lastCode(app, email, 'signup'), password, first_name: 'Client' } })
  t.equal(signup.response.status, 201, 'sign-up answers 201')
  t.equal(signup.data?.data.user.email, email)

  const login = await api.POST('/api/v1/auth/login-with-password', { body: { identifier: email, password } })
  t.equal(login.response.status, 200, 'login answers 200')
  const result = login.data!.data
  // The login result is the token bundle or, for an account with a second factor, an MFA ticket.
  if ('mfa_required' in result) throw new Error('no second factor was enrolled')
  const tokens = result
  t.equal(tokens.token_type, 'bearer')

  api.setAccessToken(tokens.access_token)
  const profile = await api.GET('/api/v1/settings/profile')
  t.equal(profile.response.status, 200, 'a protected route answers with the access token')
  t.equal(profile.data?.data.first_name, 'Client')

  const refreshed = await api.POST('/api/v1/auth/refresh-token', { body: { refresh_token: tokens.refresh_token } })
  t.equal(refreshed.response.status, 200, 'refresh answers 200')
  const next = refreshed.data!.data
  t.not(next.refresh_token, tokens.refresh_token, 'the refresh token rotated')

  api.setAccessToken(next.access_token)
  const logout = await api.POST('/api/v1/auth/logout', { body: {} })
  t.equal(logout.response.status, 200, 'logout answers 200')
  t.equal(logout.data?.data.revoked_sessions, 1)

  const after = await api.GET('/api/v1/settings/profile')
  t.equal(after.response.status, 401, 'the session is over')
  t.equal(after.error?.error.code, 'AUTH_SESSION_REVOKED', 'errors are typed as the ErrorResponse envelope')
})
