import { fork, type ChildProcess } from 'node:child_process'
import { closeSync, mkdirSync, openSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort } from './proc.ts'

/** The processes under test: the API (server.ts, as `npm start` runs it) and the bare-Fastify baseline. */

export const benchDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
export const root = path.resolve(benchDir, '..')
export const resultsDir = path.join(benchDir, 'results')

export const adminEmail = 'bench-admin@example.com'
export const adminPassword = 'bench password that is long enough'

export interface Server {
  name: string
  port: number
  pid: number
  child: ChildProcess
  /** SIGTERM, then SIGKILL after 15 s; resolves when the process is gone. */
  stop: () => Promise<void>
}

const START_TIMEOUT_MS = 180_000

/**
 * Limits that would otherwise answer the bench's load with 429: it sends
 * thousands of requests a second from one IP with one account.
 */
const benchLimits: Record<string, string> = {
  RATE_LIMIT_MAX: '100000000',
  AUTH_RATE_LIMIT_PER_IP: '100000000',
  AUTH_RATE_LIMIT_PER_IDENTIFIER: '100000000'
}

function managed (name: string, child: ChildProcess, port: number): Server {
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve()
    else child.once('exit', () => resolve())
  })
  let stopping: Promise<void> | undefined
  return {
    name,
    port,
    pid: child.pid!,
    child,
    stop: () => (stopping ??= (async () => {
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000)
      await exited
      clearTimeout(timer)
    })())
  }
}

/** Resolves on the child's first IPC message matching, rejects when it exits first or after the timeout. */
function waitForMessage<T> (child: ChildProcess, name: string, match: (message: unknown) => T | undefined): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`${name} did not start within ${START_TIMEOUT_MS / 1000} s`)), START_TIMEOUT_MS)
    const onExit = (code: number | null) => fail(new Error(`${name} exited with ${code} before it was ready (see bench/results/${name}.log)`))
    const onMessage = (message: unknown) => {
      const value = match(message)
      if (value === undefined) return
      cleanup()
      resolve(value)
    }
    function cleanup () {
      clearTimeout(timer)
      child.off('exit', onExit)
      child.off('message', onMessage)
    }
    function fail (error: Error) {
      cleanup()
      reject(error)
    }
    child.once('exit', onExit)
    child.on('message', onMessage)
  })
}

export async function startBaseline (): Promise<Server> {
  const child = fork(path.join(benchDir, 'baseline.ts'), [], { execArgv: ['--import', 'tsx'], env: { ...process.env, PORT: '0' } })
  const port = await waitForMessage(child, 'baseline', (m) => (m as { port?: number } | null)?.port)
  return managed('baseline', child, port)
}

/**
 * Starts `server.ts` on loopback with the stack's environment plus `env`, and
 * waits for its ready message. Its output goes to bench/results/<name>.log.
 */
/**
 * BENCH_CPU_PROF=1: each API process writes a V8 CPU profile when it stops, to
 * bench/results/profiles/<name>-*.cpuprofile (open it in Chrome DevTools, or
 * summarise it with `npm run bench:profile`).
 */
function profileArgs (name: string): string[] {
  if (!process.env.BENCH_CPU_PROF) return []
  const dir = path.join(resultsDir, 'profiles')
  mkdirSync(dir, { recursive: true })
  return ['--cpu-prof', `--cpu-prof-dir=${dir}`, `--cpu-prof-name=${name}-${Date.now()}.cpuprofile`]
}

export async function startApi (name: string, env: Record<string, string>, entry = path.join(root, 'server.ts')): Promise<Server> {
  const port = await freePort()
  mkdirSync(resultsDir, { recursive: true })
  const log = openSync(path.join(resultsDir, `${name}.log`), 'w')
  const child = fork(entry, [], {
    cwd: root,
    execArgv: [...(entry.endsWith('.ts') ? ['--import', 'tsx'] : []), ...profileArgs(name)],
    env: {
      ...process.env,
      NODE_ENV: 'development',
      HOST: '127.0.0.1',
      PORT: String(port),
      LOG_LEVEL: 'warn',
      BOOTSTRAP_ADMIN_EMAIL: adminEmail,
      BOOTSTRAP_ADMIN_PASSWORD: adminPassword,
      ...benchLimits,
      ...env
    },
    stdio: ['ignore', log, log, 'ipc']
  })
  closeSync(log)
  const server = managed(name, child, port)
  try {
    await waitForMessage(child, name, (m) => m === 'ready' ? true : undefined)
  } catch (error) {
    await server.stop()
    throw error
  }
  return server
}
