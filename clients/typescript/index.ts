// A typed client of the API: openapi-fetch over the types openapi-typescript generates
// from openapi.json (`npm run client:generate` rewrites schema.d.ts; do not edit it).
// Every path, parameter, body and answer is checked by the compiler, e.g.
//   const api = createApiClient({ baseUrl: 'http://localhost:3000' })
//   const { data } = await api.POST('/api/v1/auth/login-with-password', { body: { identifier, password } })
//   api.setAccessToken(data?.data.access_token)
//   await api.GET('/api/v1/settings/profile')
import createClient, { type Client, type ClientOptions } from 'openapi-fetch'
import type { components, operations, paths } from './schema.d.ts'

export type { components, operations, paths }
export type Schemas = components['schemas']

export interface ApiClient extends Client<paths> {
  /** The token sent as `Authorization: Bearer` on every request that sets none itself; undefined stops sending it. */
  setAccessToken: (token: string | undefined) => void
}

export function createApiClient (options: ClientOptions & { baseUrl: string }): ApiClient {
  const client = createClient<paths>(options)
  let accessToken: string | undefined
  client.use({
    onRequest ({ request }) {
      if (accessToken !== undefined && !request.headers.has('authorization')) request.headers.set('authorization', `Bearer ${accessToken}`)
      return request
    }
  })
  return Object.assign(client, { setAccessToken: (token: string | undefined) => { accessToken = token } })
}
