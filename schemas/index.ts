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
import { adminUserSchemas } from './admin-users.ts'
import { passkeySchemas } from './passkeys.ts'

/**
 * Schemas with an `$id`, added once by the schemas plugin
 * (plugins/app/http/schemas.ts): routes reference them with `ref(Schema)`
 * (schemas/ref.ts), and OpenAPI shows them as named components, in this order.
 * Any order is valid: references are resolved when routes compile
 * (test/foundation/openapi.test.ts registers the list shuffled).
 */
export const sharedSchemas = [...envelopeSchemas, UserSchema, PublicProfileSchema, ...mfaSchemas, ...authSchemas, ...otpSchemas, ...mediaSchemas, ...activitySchemas, ...dashboardSchemas, ...settingsSchemas, ...adminSchemas, ...adminUserSchemas, ...passkeySchemas]
