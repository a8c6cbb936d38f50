// Entry of the image worker when the app runs from TypeScript sources (tsx, tap);
// the same reasons as workers/password.dev.mjs. The build runs dist/workers/image.js.
import { tsImport } from 'tsx/esm/api'

export const { profilePicture, threadId } = await tsImport('./image.ts', import.meta.url)
