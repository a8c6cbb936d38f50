import { SerializerSelector, type SerializerFactory } from '@fastify/fast-json-stringify-compiler'
import ValidatorSelector, { type ValidatorFactory } from '@fastify/ajv-compiler'
import { checkInput } from '../../../schemas/boundary.ts'

/*
 * The schema compilers of the server (serverOptions in server-options.ts): lazy,
 * and with the input boundary in front of every validator. Not a plugin.
 */

/** The server's compilers: serializers and validators made on first use, validators behind the input boundary. */
export const schemaCompilers = () => ({ buildSerializer: lazySerializers(SerializerSelector()), buildValidator: boundaryValidators(lazyValidators(ValidatorSelector())) })

/**
 * Response serializers compiled on first use, not at start-up: Fastify
 * otherwise compiles one per route and status code, most of which an
 * instance never runs (start-up time and idle memory: docs/performance.md).
 * The first response of a kind pays its compilation once;
 * test/foundation/compilers.test.ts compiles them all eagerly, so a schema
 * that cannot compile still fails the suite.
 */
export function lazySerializers (build: SerializerFactory): SerializerFactory {
  return (externalSchemas, options) => {
    const compile = build(externalSchemas, options)
    return (route) => {
      let serialize: ((doc: unknown) => string) | undefined
      return (doc) => (serialize ??= compile(route))(doc)
    }
  }
}

/**
 * Request validators, likewise compiled on the first request that needs them.
 * Fastify reads `.errors` from the function it was given after a failed call,
 * so the wrapper mirrors the compiled function's errors.
 */
export function lazyValidators (build: ValidatorFactory): ValidatorFactory {
  return (externalSchemas, options) => {
    const compile = build(externalSchemas, options)
    return (route) => {
      let validate: ReturnType<ReturnType<ValidatorFactory>> | undefined
      const lazy = ((data: unknown) => {
        validate ??= compile(route)
        const valid = validate(data)
        lazy.errors = validate.errors
        return valid
      }) as ReturnType<ReturnType<ValidatorFactory>>
      return lazy
    }
  }
}

/**
 * The input boundary of the whole API (schemas/boundary.ts): every body,
 * querystring and params validator first refuses NUL, lone surrogates and
 * over-deep nesting, then runs the route's schema. Headers are left to Node's
 * parser, which refuses such bytes itself.
 */
export function boundaryValidators (build: ValidatorFactory): ValidatorFactory {
  return (externalSchemas, options) => {
    const compile = build(externalSchemas, options)
    return (route) => {
      const validate = compile(route)
      if (route.httpPart === 'headers') return validate
      const checked = ((data: unknown) => {
        const problem = checkInput(data)
        if (problem) {
          checked.errors = [problem]
          return false
        }
        const valid = validate(data)
        checked.errors = validate.errors
        return valid
      }) as ReturnType<ReturnType<ValidatorFactory>>
      return checked
    }
  }
}
