import t from 'tap'
import SwaggerParser from '@apidevtools/swagger-parser'
import { build } from '../helpers/build.ts'
import { errorCodes } from '../../schemas/errors.ts'

t.test('/api-docs/json is a valid OpenAPI 3 document with named components', async (t) => {
  const app = await build(t)
  const res = await app.inject('/api-docs/json')
  t.equal(res.statusCode, 200)
  const doc = res.json()
  t.match(doc.openapi, /^3\./)
  await t.resolves(SwaggerParser.validate(structuredClone(doc)), 'validates with swagger-parser')

  const names = Object.keys(doc.components.schemas ?? {})
  t.ok(names.includes('ErrorResponse'), 'the error envelope is a named component')
  t.notOk(names.some((n) => /^def-\d+$/.test(n)), 'no def-N names')
  t.same(doc.components.schemas.ErrorResponse.properties.error.properties.code.enum?.sort() ??
    doc.components.schemas.ErrorResponse.properties.error.properties.code.anyOf?.map((s: any) => s.enum?.[0] ?? s.const).sort(),
  Object.keys(errorCodes).sort(), 'every error code is documented')

  t.same(Object.keys(doc.components.securitySchemes).sort(), ['bearerAuth', 'oauth2', 'sessionToken'])
  t.equal(doc.components.securitySchemes.oauth2.flows.password.tokenUrl, '/api/v1/token')
  t.same(doc.servers, [{ url: '/' }], 'relative server: Try it out stays on the page origin')

  const system = doc.paths['/api/v1/health/system'].get
  t.same(system['x-permissions'], ['view_system_health'], 'the permission shows in the document (SR-24)')
  t.same(system.security, [{ oauth2: [] }, { bearerAuth: [] }, { sessionToken: [] }])
  t.notOk(doc.paths['/health'].get.security, 'public routes need no credential')
  t.ok(doc.paths['/api/v1/health/database'].get.responses['4XX'] || doc.paths['/api/v1/health/database'].get.responses['5XX'] || true)
})

t.test('Swagger UI is served at /api-docs', async (t) => {
  const app = await build(t)
  const res = await app.inject('/api-docs')
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /text\/html/)
  t.match(res.body, /swagger-ui/i)
  const initializer = await app.inject('/api-docs/static/swagger-initializer.js')
  t.equal(initializer.statusCode, 200, 'the UI script loads from the same origin (CSP self)')
})

t.test('GET /metrics speaks Prometheus text', async (t) => {
  const app = await build(t, { METRICS_ENABLED: 'true' })
  await app.inject('/health')
  await app.inject('/health')
  await app.inject({ method: 'HEAD', url: '/health' })
  await app.inject('/no/such/path/1234')
  await app.inject('/api/v1/settings/profile')
  const res = await app.inject('/metrics')
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /text\/plain/)
  t.match(res.body, /process_cpu_user_seconds_total/)
  const counts = Object.fromEntries([...res.body.matchAll(/^http_request_duration_seconds_count\{(.*)\} (\d+)$/gm)].map((m) => [m[1], Number(m[2])]))
  t.same(counts, {
    'method="GET",route="/health",status_code="200"': 2,
    'method="GET",route="/api/v1/settings/profile",status_code="401"': 1
  }, 'counted by route pattern and status; HEAD, unmatched URLs and /metrics itself are not')
  t.match(res.body, /http_request_duration_seconds_bucket\{le="0.005",method="GET",route="\/health",status_code="200"\}/)

  const again = await app.inject('/metrics')
  t.match(again.body, /http_request_duration_seconds_count\{method="GET",route="\/health",status_code="200"\} 2/, 'scrapes do not count themselves')
})
