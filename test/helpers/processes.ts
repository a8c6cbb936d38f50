import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'

/**
 * Real processes for end-to-end tests: API servers started the way PM2 or a
 * container starts them (`node --import tsx server.ts`, configured by env
 * only) and a Caddy built from the committed Caddyfile. Everything listens on
 * loopback, is bounded in time, and is stopped at teardown.
 */

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
const tsxLoader = import.meta.resolve('tsx')

interface Teardown { teardown: (fn: () => unknown) => void }

export async function freePort (host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, host, () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })
}

export const caddyInstalled = () => spawnSync('caddy', ['version'], { stdio: 'ignore' }).status === 0

export interface Exit { code: number | null, signal: NodeJS.Signals | null }
export type LogLine = Record<string, unknown> & { msg?: string, reqId?: string }

/** A child process whose output is kept (JSON lines parsed) and whose exit can be awaited. */
abstract class Managed {
  readonly lines: string[] = []
  readonly exited: Promise<Exit>
  exit?: Exit
  private readonly waiters = new Set<() => void>()

  constructor (readonly child: ChildProcess, readonly name: string) {
    for (const stream of [child.stdout, child.stderr]) {
      let partial = ''
      stream?.setEncoding('utf8')
      stream?.on('data', (chunk: string) => {
        const parts = (partial + chunk).split('\n')
        partial = parts.pop() ?? ''
        this.lines.push(...parts.filter(Boolean))
        for (const wake of this.waiters) wake()
      })
    }
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => {
      this.exit = { code, signal }
      for (const wake of this.waiters) wake()
      resolve(this.exit)
    }))
  }

  get pid () { return this.child.pid! }
  get running () { return this.exit === undefined }

  /** Every output line that is JSON (pino and Caddy both log JSON lines). */
  get logs (): LogLine[] {
    const parsed: LogLine[] = []
    for (const line of this.lines) {
      if (!line.startsWith('{')) continue
      try { parsed.push(JSON.parse(line) as LogLine) } catch {}
    }
    return parsed
  }

  /** Resolves with the first log line matching, rejects when the process exits first or on timeout. */
  async waitForLog (match: (line: LogLine) => boolean, timeoutMs = 15_000): Promise<LogLine> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const found = this.logs.find(match)
      if (found) return found
      if (!this.running) throw new Error(`${this.name} exited (${JSON.stringify(this.exit)}) before the expected log line`)
      if (Date.now() > deadline) throw new Error(`${this.name}: expected log line not seen in ${timeoutMs} ms`)
      await new Promise<void>((resolve) => {
        const wake = () => { this.waiters.delete(wake); clearTimeout(timer); resolve() }
        const timer = setTimeout(wake, 200)
        this.waiters.add(wake)
      })
    }
  }

  signal (signal: NodeJS.Signals) { if (this.running) this.child.kill(signal) }

  /** SIGTERM, then SIGKILL if still running after `graceMs`. */
  async stop (graceMs = 15_000): Promise<Exit> {
    if (!this.running) return this.exit!
    this.child.kill('SIGTERM')
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs)
    try { return await this.exited } finally { clearTimeout(timer) }
  }

  tail (n = 20) { return this.lines.slice(-n).join('\n') }
}

export class ServerProcess extends Managed {
  constructor (child: ChildProcess, readonly label: string, readonly port: number) { super(child, `server ${label}`) }
  get url () { return `http://127.0.0.1:${this.port}` }
}

export interface StartServerOptions {
  /** The process's whole configuration (merged over a minimal base: PATH, HOME, HOST, PORT). */
  env: Record<string, string>
  /** Shown in logs and as API_MODE, so a response tells which instance answered (P/health). */
  label: string
  port?: number
  readyTimeoutMs?: number
  /** A built server.js (keep-alive-load.ts buildServer) run with plain `node`, as in production; default: server.ts through tsx. */
  script?: string
}

/**
 * Starts `node --import tsx server.ts` with an IPC channel, like PM2 does, and
 * resolves once the server has sent `ready` (PM2's wait_ready contract) and
 * answers GET /health. Its working directory is an empty temporary folder, so
 * no `.env` of the developer's checkout leaks into its configuration.
 */
export async function startServer (t: Teardown, opts: StartServerOptions): Promise<ServerProcess> {
  const port = opts.port ?? await freePort()
  const cwd = mkdtempSync(path.join(tmpdir(), `api-${opts.label}-`))
  const child = spawn(process.execPath, opts.script ? [opts.script] : ['--import', tsxLoader, path.join(root, 'server.ts')], {
    cwd,
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: cwd,
      HOST: '127.0.0.1',
      PORT: String(port),
      API_MODE: opts.label,
      DATA_DIR: path.join(cwd, 'data'),
      ...opts.env
    },
    stdio: ['ignore', 'pipe', 'pipe', 'ipc']
  })
  const server = new ServerProcess(child, opts.label, port)
  t.teardown(async () => {
    await server.stop(5_000)
    rmSync(cwd, { recursive: true, force: true })
  })
  const ready = new Promise<void>((resolve) => child.on('message', (message) => { if (message === 'ready') resolve() }))
  const timeoutMs = opts.readyTimeoutMs ?? 90_000
  const outcome = await Promise.race([
    ready.then(() => 'ready' as const),
    server.exited.then(() => 'exited' as const),
    // unref'd: a pending timer must not keep the test process alive after the server is up
    sleep(timeoutMs, 'timeout' as const, { ref: false })
  ])
  if (outcome !== 'ready') {
    server.signal('SIGKILL')
    throw new Error(`server ${opts.label} did not become ready (${outcome}):\n${server.tail()}`)
  }
  const health = await fetch(`${server.url}/health`)
  if (health.status !== 200) throw new Error(`server ${opts.label}: /health answered ${health.status} after ready`)
  return server
}

export class CaddyProcess extends Managed {
  constructor (child: ChildProcess, readonly port: number) { super(child, 'caddy') }
  get url () { return `http://127.0.0.1:${this.port}` }
  /** Caddy's JSON access log entries (logger http.log.access...). */
  get accessLog () { return this.logs.filter((l) => String(l.logger ?? '').startsWith('http.log.access')) }
}

export interface StartCaddyOptions {
  /** host:port of each API instance. */
  upstreams: string[]
  /** Another Caddyfile than the committed one (to measure an older version of it). */
  caddyfile?: string
  /** Overrides of the Caddyfile's other env placeholders (HEALTH_INTERVAL, FAIL_DURATION, MAX_BODY_SIZE, ...). */
  env?: Record<string, string>
}

/**
 * Runs `caddy run` on the committed Caddyfile, configured through its env
 * placeholders: a plain-HTTP site on a loopback high port, the admin endpoint
 * off, state in a temporary folder. Resolves once a request through it reaches
 * an instance.
 */
export async function startCaddy (t: Teardown, opts: StartCaddyOptions): Promise<CaddyProcess> {
  const port = await freePort()
  const home = mkdtempSync(path.join(tmpdir(), 'caddy-'))
  const child = spawn('caddy', ['run', '--config', opts.caddyfile ?? path.join(root, 'Caddyfile'), '--adapter', 'caddyfile'], {
    cwd: home,
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: home,
      XDG_DATA_HOME: path.join(home, 'data'),
      XDG_CONFIG_HOME: path.join(home, 'config'),
      SITE_ADDRESS: `http://127.0.0.1:${port}`,
      CADDY_ADMIN: 'off',
      API_UPSTREAMS: opts.upstreams.join(' '),
      ...opts.env
    },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  const caddy = new CaddyProcess(child, port)
  t.teardown(async () => {
    await caddy.stop(5_000)
    rmSync(home, { recursive: true, force: true })
  })
  for (let i = 0; i < 100; i++) {
    if (!caddy.running) throw new Error(`caddy exited (${JSON.stringify(caddy.exit)}):\n${caddy.tail()}`)
    try {
      if ((await fetch(`${caddy.url}/health`)).status === 200) return caddy
    } catch {}
    await sleep(100)
  }
  caddy.signal('SIGKILL')
  throw new Error(`caddy did not come up:\n${caddy.tail()}`)
}
