import fc from 'fast-check'
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify'
import { randomUUID } from 'node:crypto'
import { errorCodes } from '../../schemas/errors.ts'

/**
 * The fuzz checker: requests generated from the OpenAPI document (every
 * operation, hostile values in every parameter and body field), and the one
 * rule every answer must meet: a 2xx or 4xx, in the envelope (or the body the
 * document says instead: /token's RFC 6749 answers, /health, file downloads),
 * with the request id and the security headers (SR-29, SR-31, SR-33).
 */

declare global {
  interface String { toWellFormed: () => string }
}

type Schema = Record<string, any>
export interface Operation {
  method: string
  path: string
  parameters: Array<{ name: string, in: 'query' | 'path' | 'header', schema: Schema, required?: boolean }>
  body?: { schema: Schema, required: boolean, types: string[] }
  /** The documented 2xx JSON body is the success envelope. */
  envelope: boolean
  /** Answers RFC 6749 bodies instead of the envelope (`P/token`). */
  oauth: boolean
}

const METHODS = ['get', 'post', 'put', 'patch', 'delete']

/** Every operation of an OpenAPI 3 document, $refs to components resolved. */
export function operationsOf (doc: any): Operation[] {
  const resolve = (schema: any): Schema => {
    if (!schema || typeof schema !== 'object') return {}
    if (typeof schema.$ref === 'string') return resolve(doc.components?.schemas?.[schema.$ref.split('/').pop()])
    return schema
  }
  const ops: Operation[] = []
  for (const [path, item] of Object.entries<any>(doc.paths)) {
    for (const method of METHODS) {
      const op = item[method]
      if (!op) continue
      const content = op.requestBody?.content ?? {}
      const types = Object.keys(content)
      const success = Object.entries<any>(op.responses ?? {}).find(([code]) => /^2/.test(code))?.[1]
      const successSchema = resolve(success?.content?.['application/json']?.schema)
      ops.push({
        method: method.toUpperCase(),
        path,
        parameters: (op.parameters ?? []).map((p: any) => ({ ...p, schema: resolve(p.schema) })),
        body: types.length > 0 ? { schema: resolve(content['application/json']?.schema ?? content[types[0]].schema), required: Boolean(op.requestBody.required), types } : undefined,
        envelope: Boolean(resolve(successSchema.properties?.success)?.type) || successSchema.properties?.success !== undefined,
        oauth: path.endsWith('/token')
      })
    }
  }
  return ops.map((op) => ({ ...op, body: op.body ? { ...op.body, schema: deref(op.body.schema, resolve) } : undefined }))
}

function deref (schema: Schema, resolve: (s: any) => Schema, depth = 0): Schema {
  if (depth > 6) return {}
  const s = resolve(schema)
  if (!s.properties) return s
  return { ...s, properties: Object.fromEntries(Object.entries<any>(s.properties).map(([k, v]) => [k, deref(v, resolve, depth + 1)])) }
}

// ---------------------------------------------------------------- values

/** A value nested `depth` levels deep, written as JSON text (JSON.stringify itself would overflow its stack). */
class Deep { constructor (readonly depth: number) {} }

/** JSON text of a generated value, with Deep values expanded. */
export function toJson (value: unknown): string {
  return JSON.stringify(value, (_key, v) => (v instanceof Deep ? `\u0001deep:${v.depth}` : v))
    .replace(/"\\u0001deep:(\d+)"/g, (_m, n: string) => '['.repeat(Number(n)) + ']'.repeat(Number(n)))
}

const cursorOf = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url')

const lone = fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c))
const special = fc.constantFrom('\u0000', '\ufeff', '\u202e', '\r\n', '%00', '%', '%E0%A4%A', '%ED%A0%80', '../..', '\\', '"', "' OR '1'='1", '__proto__', 'constructor', '$ne', '*', '', ' ', 'null', 'NaN', '-infinity', 'infinity')

/** Strings meant to break something: NUL, lone surrogates, encodings, long ones, SQL-ish and JSON-ish text. */
export const hostileString: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.array(fc.oneof(fc.string({ unit: 'binary', maxLength: 6 }), lone, special), { minLength: 1, maxLength: 4 }).map((parts) => parts.join('')) },
  { weight: 1, arbitrary: fc.constantFrom(10_000, 100_000).map((n) => 'x'.repeat(n)) },
  { weight: 1, arbitrary: fc.constantFrom('+275760-09-13T00:00:00.000Z', '-271821-04-20T00:00:00.000Z', '9999-12-31T23:59:59.999Z', '0000-00-00T00:00:00Z', '2026-02-30T00:00:00Z', '1e400', '-1', '18446744073709551616') },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      cursorOf({ k: 'not-a-date', id: randomUUID(), s: 'created_at', o: 'desc' }),
      cursorOf({ at: '+275760-09-13T00:00:00.000Z', id: randomUUID() }),
      cursorOf({ after: 'a\u0000' }),
      cursorOf(['9999-99-99T00:00:00.000000Z', randomUUID()]),
      cursorOf('{"k":'),
      cursorOf({ k: { $gt: '' }, id: [], s: 'email', o: 'asc' }),
      'not base64 !!!'
    )
  }
)

const hostileNumber = fc.oneof(
  fc.constantFrom(Number.MAX_SAFE_INTEGER + 2, -Number.MAX_SAFE_INTEGER, 1e308, -1e308, -1, 0, 0.5, 2 ** 31, -(2 ** 31), 2 ** 63),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true })
)

/** Any hostile value: strings, numbers, wrong types, deep nesting. */
export const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 5, arbitrary: hostileString },
  { weight: 2, arbitrary: hostileNumber },
  { weight: 2, arbitrary: fc.constantFrom<unknown>(null, true, false, [], {}, [null], { a: 1 }, ['a', 'b']) },
  { weight: 1, arbitrary: fc.constantFrom(40, 2000, 200_000).map((n) => new Deep(n)) },
  { weight: 1, arbitrary: fc.dictionary(hostileString, fc.oneof(hostileString, hostileNumber), { maxKeys: 3 }) },
  { weight: 1, arbitrary: fc.array(hostileString, { maxLength: 3 }) }
)

/** A value the schema accepts, when one is easy to make (so hostile values reach the handlers beside it). */
function plausible (schema: Schema): fc.Arbitrary<unknown> {
  if (schema.const !== undefined) return fc.constant(schema.const)
  if (Array.isArray(schema.enum)) return fc.constantFrom(...schema.enum)
  const alternatives = schema.anyOf ?? schema.oneOf
  if (Array.isArray(alternatives) && alternatives.length > 0) return fc.oneof(...alternatives.map((s: Schema) => plausible(s)))
  const type = Array.isArray(schema.type) ? schema.type.find((t: string) => t !== 'null') : schema.type
  switch (type) {
    case 'integer':
    case 'number': return fc.integer({ min: schema.minimum ?? 0, max: Math.min(schema.maximum ?? 100, (schema.minimum ?? 0) + 100) })
    case 'boolean': return fc.boolean()
    case 'array': return fc.array(plausible(schema.items ?? {}), { maxLength: 2 })
    case 'object': return fc.constant({})
    case 'string': {
      switch (schema.format) {
        case 'uuid': return fc.constant(randomUUID())
        case 'email': return fc.constantFrom('fuzz@example.com', 'a@b.co')
        case 'date-time': return fc.constantFrom(new Date().toISOString(), '2020-01-01T00:00:00Z')
        case 'date': return fc.constant('2020-01-01')
        case 'uri': return fc.constantFrom('http://127.0.0.1/x', 'https://10.0.0.1/a.png')
      }
      const min = schema.minLength ?? 0
      if (schema.pattern) return fc.constantFrom('abc_def', 'ab', 'en', 'UTC', '+14155550123', `a${'b'.repeat(Math.max(0, min - 1))}`)
      return fc.constantFrom('abc', 'Password-Long-Enough-123', 'x'.repeat(Math.max(1, min)))
    }
  }
  return fc.constant('abc')
}

const ABSENT = Symbol('absent')
/** For each field: absent, a plausible value or a hostile one. */
const field = (schema: Schema) => fc.oneof(
  { weight: 1, arbitrary: fc.constant<unknown>(ABSENT) },
  { weight: 3, arbitrary: plausible(schema) },
  { weight: 4, arbitrary: hostileValue }
)

function record (fields: Record<string, fc.Arbitrary<unknown>>): fc.Arbitrary<Record<string, unknown>> {
  const names = Object.keys(fields)
  if (names.length === 0) return fc.constant({})
  return fc.tuple(...names.map((n) => fields[n])).map((values) => Object.fromEntries(names.map((n, i) => [n, values[i]]).filter(([, v]) => v !== ABSENT)))
}

/** URL text of a value: percent-encoded, except strings that already look like URL escapes, which go raw. */
function urlText (value: unknown): string {
  const text = typeof value === 'string' ? value : value instanceof Deep ? '['.repeat(Math.min(value.depth, 500)) : typeof value === 'object' ? JSON.stringify(value) : String(value)
  if (/^%[0-9A-Fa-f]{0,2}/.test(text)) return text
  return encodeURIComponent(text.toWellFormed())
}

export interface FuzzRequest { inject: InjectOptions, label: string }

/** The request arbitrary of one operation. */
export function requestArbitrary (op: Operation, prefixHeaders: Record<string, string> = {}): fc.Arbitrary<FuzzRequest> {
  const params = (where: string) => Object.fromEntries(op.parameters.filter((p) => p.in === where).map((p) => [p.name, field(p.schema)]))
  const bodySchema = op.body?.schema ?? {}
  const bodyFields = Object.fromEntries(Object.entries<Schema>(bodySchema.properties ?? {}).map(([k, s]) => [k, field(s)]))
  const body: fc.Arbitrary<unknown> = op.body
    ? fc.oneof(
      { weight: 6, arbitrary: record(bodyFields) },
      { weight: 1, arbitrary: record(bodyFields).chain((b) => fc.tuple(hostileString, hostileValue).map(([k, v]) => ({ ...b, [k]: v }))) },
      { weight: 1, arbitrary: hostileValue })
    : fc.constant(ABSENT)
  return fc.record({ path: record(params('path')), query: record(params('query')), body }).map(({ path, query, body }) => {
    const url = op.path.replace(/\{(\w+)\}/g, (_m, name: string) => (name in path ? urlText(path[name]) : encodeURIComponent(randomUUID())))
    const search = Object.entries(query).flatMap(([k, v]) => (Array.isArray(v) ? v : [v]).map((item) => `${encodeURIComponent(k)}=${urlText(item)}`)).join('&')
    const target = search ? `${url}?${search}` : url
    const inject: InjectOptions = { method: op.method as InjectOptions['method'], url: target, headers: { ...prefixHeaders } }
    if (body !== ABSENT) {
      inject.payload = toJson(body)
      inject.headers = { ...inject.headers, 'content-type': 'application/json' }
    }
    const label = `${inject.method} ${target.slice(0, 300)}${inject.payload ? ` ${String(inject.payload).slice(0, 300)}` : ''}`
    return { inject, label }
  })
}

// ---------------------------------------------------------------- the rule

const required = { 'x-content-type-options': 'nosniff', 'x-frame-options': 'DENY', 'referrer-policy': 'no-referrer' }

/** What is wrong with an answer, or undefined when it keeps the rule. */
export function answerProblem (op: Pick<Operation, 'envelope' | 'oauth'>, res: Pick<LightMyRequestResponse, 'statusCode' | 'headers' | 'body'>): string | undefined {
  const status = res.statusCode
  if (status >= 500 || status < 200 || (status >= 300 && status < 400)) return `status ${status}`
  for (const [name, value] of Object.entries(required)) if (res.headers[name] !== value) return `header ${name}: ${String(res.headers[name])}`
  if (!/frame-ancestors 'none'/.test(String(res.headers['content-security-policy']))) return 'no CSP frame-ancestors'
  const id = res.headers['x-request-id']
  if (typeof id !== 'string' || id.length === 0) return 'no X-Request-Id'
  const type = String(res.headers['content-type'] ?? '')
  if (status === 204 || res.body === '') return status >= 400 ? 'an error without a body' : undefined
  if (!type.startsWith('application/json')) return status < 300 && !op.envelope ? undefined : `content-type ${type}`
  let body: any
  try { body = JSON.parse(res.body) } catch { return 'a body that is not JSON' }
  if (op.oauth) {
    if (status >= 400) return typeof body?.error === 'string' && typeof body.error_description === 'string' ? undefined : 'not an RFC 6749 error'
    return typeof body?.access_token === 'string' ? undefined : 'not an RFC 6749 token answer'
  }
  if (status >= 400) {
    const e = body?.error
    if (body?.success !== false || typeof e !== 'object' || e === null) return 'not the error envelope'
    if (e.id !== id) return 'error.id is not the request id'
    if (!(e.code in errorCodes)) return `unknown error code ${String(e.code)}`
    if (typeof e.message !== 'string' || e.message === '') return 'no error message'
    if (Number.isNaN(Date.parse(e.timestamp))) return 'no timestamp'
    return undefined
  }
  if (!op.envelope) return undefined
  if (body?.success !== true || body.id !== id || typeof body.message !== 'string' || !('data' in body)) return 'not the success envelope'
  return undefined
}

// ---------------------------------------------------------------- runner

export interface Finding { operation: string, report: string }
export interface FuzzResult { requests: number, findings: Finding[] }

/**
 * Sends `runs` generated requests to each operation (fast-check, seeded per
 * operation from `seed`, so one operation's failure replays alone) and checks
 * each answer; between operations, /health must still answer 200.
 */
export async function fuzz (app: FastifyInstance, ops: Operation[], options: { seed: number, runs: number, headers?: () => Promise<Record<string, string>> | Record<string, string>, healthUrl?: string }): Promise<FuzzResult> {
  let requests = 0
  const findings: Finding[] = []
  for (const [index, op] of ops.entries()) {
    const headers = options.headers ? await options.headers() : {}
    const property = fc.asyncProperty(requestArbitrary(op, headers), async (request) => {
      requests++
      const res = await app.inject(request.inject)
      const problem = answerProblem(op, res)
      if (problem) throw new Error(`${problem}: ${res.statusCode} ${res.body.slice(0, 500)}`)
    })
    const details = await fc.check(property, { seed: options.seed + index, numRuns: options.runs, endOnFailure: true, maxSkipsPerRun: 0 })
    if (details.failed) {
      const example = details.counterexample?.[0] as FuzzRequest | undefined
      findings.push({ operation: `${op.method} ${op.path}`, report: `${example?.label ?? ''}\n${String((details.errorInstance as Error | undefined)?.message ?? details.errorInstance)}\n(replay: seed ${details.seed}, path ${details.counterexamplePath})` })
    }
    if (options.healthUrl) {
      requests++
      const health = await app.inject({ url: options.healthUrl })
      if (health.statusCode !== 200) findings.push({ operation: `${op.method} ${op.path}`, report: `/health answered ${health.statusCode} after it` })
    }
  }
  return { requests, findings }
}

/** FUZZ_SEED, or a fixed default: the same requests on every run unless asked otherwise. */
export const fuzzSeed = () => {
  const fromEnv = Number(process.env.FUZZ_SEED)
  return Number.isInteger(fromEnv) ? fromEnv : 20261207
}
