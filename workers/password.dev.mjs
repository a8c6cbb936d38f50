// Entry of the password worker when the app runs from TypeScript sources (tsx
// server.ts, tsx watch, tap). On Node 20 tsx installs its loader in the main
// thread only, and tap's ts-node loader is not one to rely on here, so the worker
// loads the .ts module itself: tsImport sends this one module graph through tsx
// without changing how anything else in the thread loads. The build runs
// dist/workers/password.js directly and never needs this file.
import { tsImport } from 'tsx/esm/api'

export const { hash, verify, threadId } = await tsImport('./password.ts', import.meta.url)
