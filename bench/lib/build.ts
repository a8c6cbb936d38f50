import { execFile } from 'node:child_process'
import { cpSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { root } from './servers.ts'

/**
 * The API as production runs it (`npm run build` + `node dist/server.js`):
 * compiled with the project's tsconfig.build.json into a temporary folder, so
 * dist/ is left alone and the bench always measures the current source. Under
 * tsx the loader alone adds tens of MB of RSS, which would skew the idle-RSS
 * figure. The assets are those scripts/copy-assets.mjs copies.
 */
export interface Build { entry: string, dispose: () => void }

export async function buildApi (): Promise<Build> {
  const outDir = mkdtempSync(path.join(tmpdir(), 'bench-build-'))
  const dispose = () => rmSync(outDir, { recursive: true, force: true })
  try {
    const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc')
    await promisify(execFile)(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.build.json'), '--outDir', outDir], { cwd: root })
    for (const dir of ['i18n', 'db/migrations']) {
      cpSync(path.join(root, dir), path.join(outDir, dir), { recursive: true, filter: (src) => !src.endsWith('.ts') })
    }
    cpSync(path.join(root, 'package.json'), path.join(outDir, 'package.json'))
    symlinkSync(path.join(root, 'node_modules'), path.join(outDir, 'node_modules'), 'dir')
    return { entry: path.join(outDir, 'server.js'), dispose }
  } catch (error) {
    dispose()
    const output = (error as { stdout?: string }).stdout
    throw new Error(`building the API failed${output ? `:\n${output}` : `: ${String(error)}`}`)
  }
}
