import { realpathSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

/** True when the module with this `import.meta.url` is the script node was started with. */
export function isMainModule (moduleUrl: string): boolean {
  const script = process.argv[1]
  if (!script) return false
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(moduleUrl))
  } catch {
    return false
  }
}

/** Reads `.env` like the server does, so a CLI sees the same settings. */
export async function loadDotenv (): Promise<void> {
  await import('dotenv/config')
}

export const errorMessage = (error: unknown) => (error instanceof Error ? error.message : String(error))
