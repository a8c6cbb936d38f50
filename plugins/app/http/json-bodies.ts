import type { FastifyInstance } from 'fastify'
import { AppError } from '../../../schemas/errors.ts'

/**
 * JSON bodies, Fastify's parser with two answers of its own:
 * - an empty body (`Content-Type: application/json` and nothing else, as fetch
 *   and axios send on a bodiless POST) is no body: the route's schema decides,
 *   as it does for a request without Content-Type;
 * - a `__proto__` key, or `constructor.prototype` (valid JSON, refused against
 *   prototype poisoning), is a 400 VALIDATION_ERROR naming the key, not "not
 *   valid JSON".
 */
export function jsonBodies (fastify: FastifyInstance) {
  const parse = fastify.getDefaultJsonParser('error', 'error')
  fastify.removeContentTypeParser('application/json')
  fastify.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    if (body.length === 0) return done(null, undefined)
    parse(request, body as string, (error, value) => {
      const key = error ? forbiddenKey(body as string) : undefined
      if (key === undefined) return done(error, value)
      done(new AppError('VALIDATION_ERROR', { details: [{ field: 'body', message: request.t('validation.forbiddenKey', { key }), forbidden_key: key }] }), undefined)
    })
  })
}

/**
 * Why JSON the parser refused is refused: the poisoning key it holds, or
 * undefined when it is not JSON at all. Runs only on refused bodies.
 */
function forbiddenKey (body: string): string | undefined {
  let found: string | undefined
  try {
    // JSON.parse defines a "__proto__" key as an own property: it does not poison.
    JSON.parse(body, (name, value: unknown) => {
      if (name === '__proto__') found ??= '__proto__'
      else if (name === 'constructor' && value !== null && typeof value === 'object' && 'prototype' in value) found ??= 'constructor.prototype'
      return value
    })
  } catch {
    return undefined
  }
  return found
}
