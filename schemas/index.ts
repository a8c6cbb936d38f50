import { envelopeSchemas } from './envelope.ts'
import { authSchemas } from './auth.ts'
import { PublicProfileSchema, UserSchema } from './user.ts'

/**
 * Schemas with an `$id`, registered once with addSchema: routes reference them
 * with Type.Ref, and OpenAPI shows them as named components. Order matters:
 * a schema is added after the ones it references.
 */
export const sharedSchemas = [...envelopeSchemas, UserSchema, PublicProfileSchema, ...authSchemas]
