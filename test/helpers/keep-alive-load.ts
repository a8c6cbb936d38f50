import { execFile } from 'node:child_process'
import { cpSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import path from 'node:path'
import { promisify } from 'node:util'
import { Pool } from 'undici'
import { root } from './processes.ts'

/**
 * What a graceful restart must survive: keep-alive clients that send their
 * next request the moment the previous answer arrived, on sockets they reuse.
 */

export interface Tally { ok: number, non2xx: number, errors: number }
export interface LoadResult {
  get: Tally
  post: Tally
  /** Status codes other than 2xx, and transport error codes, with their counts. */
  failures: Record<string, number>
}

export interface KeepAliveLoad {
  result: LoadResult
  /** Sockets the pool opened: each reconnection after `Connection: close` is one. */
  connects: () => number
  /** Lets every worker finish its current request, then closes the pool. */
  stop: () => Promise<LoadResult>
}

export interface KeepAliveLoadOptions {
  origin: string
  /** Keep-alive connections, one worker each; half the workers send GETs, half POSTs. */
  connections: number
  get: { path: string, headers?: Record<string, string> }
  post: { path: string, headers?: Record<string, string>, body: () => unknown }
}

export function keepAliveLoad (opts: KeepAliveLoadOptions): KeepAliveLoad {
  const pool = new Pool(opts.origin, { connections: opts.connections, pipelining: 1, keepAliveTimeout: 30_000 })
  let connects = 0
  pool.on('connect', () => { connects++ })
  const result: LoadResult = { get: { ok: 0, non2xx: 0, errors: 0 }, post: { ok: 0, non2xx: 0, errors: 0 }, failures: {} }
  const fail = (tally: Tally, key: string, kind: 'non2xx' | 'errors') => {
    tally[kind]++
    result.failures[key] = (result.failures[key] ?? 0) + 1
  }
  const state = { running: true }
  const worker = async (index: number) => {
    const post = index % 2 === 1
    const tally = post ? result.post : result.get
    while (state.running) {
      try {
        const res = await pool.request(post
          ? { method: 'POST', path: opts.post.path, headers: { 'content-type': 'application/json', ...opts.post.headers }, body: JSON.stringify(opts.post.body()), headersTimeout: 30_000, bodyTimeout: 30_000 }
          : { method: 'GET', path: opts.get.path, headers: opts.get.headers, headersTimeout: 30_000, bodyTimeout: 30_000 })
        await res.body.dump()
        if (res.statusCode >= 200 && res.statusCode < 300) tally.ok++
        else fail(tally, `${post ? 'POST' : 'GET'} ${res.statusCode}`, 'non2xx')
      } catch (error) {
        const { code, message } = error as { code?: string, message: string }
        fail(tally, `${post ? 'POST' : 'GET'} ${code ?? message}`, 'errors')
      }
    }
  }
  const workers = Array.from({ length: opts.connections }, (_, i) => worker(i))
  return {
    result,
    connects: () => connects,
    stop: async () => {
      state.running = false
      await Promise.all(workers)
      await pool.close()
      return result
    }
  }
}

const run = promisify(execFile)

/**
 * `npm run build` into a folder of its own under .tap/ (inside the project, so
 * the compiled code resolves node_modules), removed at teardown. `source` is
 * the project to compile (another checkout, e.g. to measure an older commit;
 * it needs a node_modules for the type check). Resolves to the path of server.js.
 */
export async function buildServer (t: { teardown: (fn: () => unknown) => void }, source = root): Promise<string> {
  mkdirSync(path.join(root, '.tap'), { recursive: true })
  const out = mkdtempSync(path.join(root, '.tap', 'build-'))
  t.teardown(() => rmSync(out, { recursive: true, force: true }))
  await run(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join(source, 'tsconfig.build.json'), '--outDir', out], { cwd: source })
  // What scripts/copy-assets.mjs copies next to the code.
  for (const dir of ['i18n', 'db/migrations']) {
    cpSync(path.join(source, dir), path.join(out, dir), { recursive: true, filter: (src) => !src.endsWith('.ts') })
  }
  cpSync(path.join(source, 'package.json'), path.join(out, 'package.json'))
  return path.join(out, 'server.js')
}
