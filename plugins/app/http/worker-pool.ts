import { accessSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

/**
 * Where a tinypool worker of workers/ starts, for the pools of passwords.ts and
 * images.ts. From TypeScript sources (tsx, tap) the worker starts from its
 * `workers/<name>.dev.mjs` shim, which loads the .ts module through tsx by itself,
 * so it inherits none of the parent's loader flags (tap's ts-node would slow every
 * worker's start). The tsc build runs `workers/<name>.js` beside the compiled app,
 * with the parent's flags.
 */
export interface WorkerEntry {
  filename: string
  execArgv?: string[]
}

const fromSource = import.meta.url.endsWith('.ts')

/** The tinypool options naming the worker `workers/<name>`; `mustExist` fails the start, not the first task, when the file is missing (an incomplete build). */
export function workerEntry (name: string, { mustExist = false }: { mustExist?: boolean } = {}): WorkerEntry {
  const entry = fromSource
    ? { filename: new URL(`../../../workers/${name}.dev.mjs`, import.meta.url).href, execArgv: [] }
    : { filename: new URL(`../../../workers/${name}.js`, import.meta.url).href }
  if (mustExist) accessSync(fileURLToPath(entry.filename))
  return entry
}
