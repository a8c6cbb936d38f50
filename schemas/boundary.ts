/**
 * The input boundary (SR-29, SR-33): every body, querystring and params object
 * a route validates is first scanned here, once, for what no schema keyword
 * says and no store accepts: NUL characters and unpaired UTF-16 surrogates in
 * any string or property name (PostgreSQL refuses both in text and jsonb, so
 * they would surface as a 500), and nesting deeper than MAX_INPUT_DEPTH (the
 * code that walks a value recursively would throw a RangeError). app.ts wraps
 * every compiled validator with it, so a new route cannot forget it.
 *
 * The scan allocates nothing on the success path (the error path is built only
 * on failure); a login body or a list's query string is a few native string
 * checks, well under a microsecond.
 */

/** Nesting limit of a request's JSON (objects and arrays). Far above any schema of the API. */
export const MAX_INPUT_DEPTH = 32

/** The Ajv-shaped error the validator reports; errors.ts turns it into a VALIDATION_ERROR detail. */
export interface BoundaryError {
  keyword: 'wellFormedText' | 'maxDepth'
  instancePath: string
  schemaPath: string
  params: Record<string, unknown>
  message: string
}

declare global {
  interface String { isWellFormed: () => boolean }
}

/** True when the string holds a NUL or a lone surrogate. Both checks are native and exit early. */
export const badText = (s: string) => s.indexOf('\u0000') !== -1 || !s.isWellFormed()

const pointer = (key: string | number) => `/${String(key).replace(/~/g, '~0').replace(/\//g, '~1')}`

const textError = (what: string): BoundaryError => ({
  keyword: 'wellFormedText',
  instancePath: '',
  schemaPath: '#/wellFormedText',
  params: {},
  message: `${what}must not contain NUL characters or unpaired surrogates`
})

/**
 * The first problem in `value`, or undefined. Plain objects and arrays are
 * walked; anything else that is not a string (numbers, a multipart body's
 * stream objects, buffers) is left to the schema. The path is built only on failure.
 */
export function checkInput (value: unknown): BoundaryError | undefined {
  if (typeof value === 'string') return badText(value) ? textError('') : undefined
  if (typeof value !== 'object' || value === null) return undefined
  return walk(value, 0)
}

function walk (value: object, depth: number): BoundaryError | undefined {
  if (depth >= MAX_INPUT_DEPTH) {
    return { keyword: 'maxDepth', instancePath: '', schemaPath: '#/maxDepth', params: { limit: MAX_INPUT_DEPTH }, message: `must not be nested deeper than ${MAX_INPUT_DEPTH} levels` }
  }
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const problem = item(value[i], depth)
      if (problem) return prefixed(problem, i)
    }
    return undefined
  }
  // Plain objects: JSON's, and the querystring parser's (a prototype whose own prototype is null).
  const proto = Object.getPrototypeOf(value)
  if (proto !== Object.prototype && proto !== null && Object.getPrototypeOf(proto) !== null) return undefined
  for (const key in value) {
    if (badText(key)) return textError('property names ')
    const problem = item((value as Record<string, unknown>)[key], depth)
    if (problem) return prefixed(problem, key)
  }
  return undefined
}

function item (value: unknown, depth: number): BoundaryError | undefined {
  if (typeof value === 'string') return badText(value) ? textError('') : undefined
  if (typeof value === 'object' && value !== null) return walk(value, depth + 1)
  return undefined
}

function prefixed (problem: BoundaryError, key: string | number): BoundaryError {
  problem.instancePath = pointer(key) + problem.instancePath
  return problem
}
