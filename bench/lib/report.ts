import { execFileSync } from 'node:child_process'
import { cpus, loadavg, totalmem } from 'node:os'
import type { Measured } from './load.ts'

/** Printing and recording results: Markdown tables (they paste into docs/performance.md) and the JSON file. */

export interface Row {
  /** Scenario id (BENCH_ONLY selects by it). */
  id: string
  scenario: string
  /** Which API process served it (its pool size and logging setting). */
  server: string
  api: Measured
  /** The bare-Fastify route, measured right before, with the same connections (and rate, if any). */
  baseline: Measured
  /** api req/s / baseline req/s; null where the two are not comparable. */
  ratio: number | null
}

export interface Target {
  requirement: string
  limit: string
  measured: string
  /** undefined: not measured in this run, or informative only. */
  met: boolean | undefined
  informative?: boolean
}

/** What `npm run bench:soak` writes to bench/results/soak.json. */
export interface SoakResult {
  date: string
  stack: string
  node: string
  durationSeconds: number
  idleRssMb: number
  /** RSS every 10 s under load, MB. */
  samples: Array<{ seconds: number, rssMb: number }>
  firstRssMb: number
  lastRssMb: number
  minRssMb: number
  maxRssMb: number
  /** Samples per window of the drift: the first and the last minute (fewer on short soaks). */
  windowSamples: number
  /**
   * Median of the last window against the median of the first, in percent.
   * Medians, not single samples: RSS swings by tens of MB between garbage
   * collections, so first-vs-last sample would measure where a GC happened to fall.
   */
  driftPercent: number
  loads: Array<{ name: string, requests: number, errors: number, p99: number }>
}

export const round = (value: number, digits = 2) => Math.round(value * 10 ** digits) / 10 ** digits

export function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

export function row (id: string, scenario: string, server: string, api: Measured, baseline: Measured, comparable = true): Row {
  const ratio = comparable && baseline.requestsPerSecond > 0 ? round(api.requestsPerSecond / baseline.requestsPerSecond) : null
  return { id, scenario, server, api, baseline, ratio }
}

function table (header: string[], alignRight: boolean[], lines: Array<Array<string | number>>): string {
  const rule = alignRight.map((right) => right ? '---:' : '---')
  return [header, rule, ...lines.map((l) => l.map(String))].map((cells) => `| ${cells.join(' | ')} |`).join('\n')
}

/** "0", or e.g. "200 (503 x200)": the count, then the non-2xx status codes among them. */
function errorsCell (m: Measured): string {
  const codes = Object.entries(m.statuses).map(([code, count]) => `${code} x${count}`)
  return codes.length > 0 ? `${m.errors} (${codes.join(', ')})` : String(m.errors)
}

export function resultsTable (rows: Row[]): string {
  return table(
    ['scenario', 'server', 'req/s', 'p50 ms', 'p99 ms', 'errors', 'CPU µs/req', 'PG+Redis µs/req', 'RSS MB', 'baseline req/s', 'baseline CPU µs/req', 'ratio'],
    [false, false, true, true, true, true, true, true, true, true, true, true],
    rows.map((r) => [r.scenario, r.server, r.api.requestsPerSecond, r.api.p50, r.api.p99, errorsCell(r.api), r.api.cpuMicrosPerRequest, r.api.servicesCpuMicrosPerRequest, r.api.rssMb,
      r.baseline.requestsPerSecond, r.baseline.cpuMicrosPerRequest, r.ratio === null ? '-' : `${r.ratio}x`])
  )
}

export function targetsTable (targets: Target[]): string {
  return table(
    ['requirement (issue 9)', 'target', 'measured', 'met'],
    [false, false, true, false],
    targets.map((t) => [t.requirement, t.limit, t.measured, t.informative ? '-' : t.met === undefined ? 'not measured' : t.met ? 'met' : 'NOT MET'])
  )
}

function gitRevision (): string | undefined {
  try {
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() !== ''
    return dirty ? `${commit} + uncommitted changes` : commit
  } catch {
    return undefined
  }
}

/** What the numbers were measured on. */
export function environment () {
  const cpu = cpus()
  return {
    date: new Date().toISOString(),
    node: process.version,
    cpu: `${cpu[0]?.model.trim() ?? 'unknown'} x ${cpu.length}`,
    memoryGb: Math.round(totalmem() / 2 ** 30),
    loadAverage: loadavg().map((l) => round(l, 1)),
    commit: gitRevision()
  }
}
