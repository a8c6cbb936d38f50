import { envelopeSchemas } from './envelope.ts'
import { authSchemas } from './auth.ts'
import { PublicProfileSchema, UserSchema } from './user.ts'
import { otpSchemas } from './otp.ts'
import { mediaSchemas } from './media.ts'
import { activitySchemas } from './activity.ts'
import { dashboardSchemas } from './dashboard.ts'
import { settingsSchemas } from './settings.ts'
import { adminSchemas } from './admin.ts'
import { mfaSchemas } from './mfa.ts'

/**
 * Schemas with an `$id`, registered once with addSchema: routes reference them
 * with Type.Ref, and OpenAPI shows them as named components. Order matters:
 * a schema is added after the ones it references.
 */
export const sharedSchemas = [...envelopeSchemas, UserSchema, PublicProfileSchema, ...mfaSchemas, ...authSchemas, ...otpSchemas, ...mediaSchemas, ...activitySchemas, ...dashboardSchemas, ...settingsSchemas, ...adminSchemas]
