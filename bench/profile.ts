/**
 * Summarises V8 CPU profiles (`BENCH_CPU_PROF=1 npm run bench` writes them to
 * bench/results/profiles/): where the API process spent its CPU, by package or
 * source folder and by function, as shares of the samples. Usage:
 *
 *   npm run bench:profile [-- file.cpuprofile ...]   (default: the newest profile)
 *   PROFILE_TOP=40 npm run bench:profile
 */
import { readdirSync, readFileSync, statSync } from 'node:fs'
import path from 'node:path'
import { resultsDir } from './lib/servers.ts'

interface ProfileNode {
  id: number
  callFrame: { functionName: string, url: string, lineNumber: number }
  children?: number[]
}
interface Profile { nodes: ProfileNode[], samples: number[], timeDeltas: number[] }

const top = Number(process.env.PROFILE_TOP ?? 25)
const profilesDir = path.join(resultsDir, 'profiles')

function newestProfile (): string {
  const files = readdirSync(profilesDir).filter((f) => f.endsWith('.cpuprofile'))
    .map((f) => path.join(profilesDir, f)).sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)
  if (files.length === 0) throw new Error(`no .cpuprofile in ${profilesDir}: run BENCH_CPU_PROF=1 npm run bench first`)
  return files[0]
}

/** "fastify", "@fastify/helmet", "app:plugins/app", "node:internal", "(gc)", ... */
function owner (url: string, functionName: string): string {
  if (url === '') return `(${functionName || 'native'})`
  if (url.startsWith('node:')) return url.startsWith('node:internal') ? 'node:internal' : url
  const modules = url.lastIndexOf('node_modules/')
  if (modules >= 0) {
    const parts = url.slice(modules + 'node_modules/'.length).split('/')
    return parts[0].startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]
  }
  const match = /\/(plugins\/\w+|routes\/\w+|schemas|db|workers|app\.js|app\.ts|server\.js|server\.ts|config\.\w+)/.exec(url)
  return match ? `app:${match[1]}` : url
}

function summarise (file: string) {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const selfMicros = new Map<number, number>()
  profile.samples.forEach((id, i) => selfMicros.set(id, (selfMicros.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)))
  let total = 0
  let idle = 0
  const byOwner = new Map<string, number>()
  const byFunction = new Map<string, number>()
  for (const [id, micros] of selfMicros) {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame
    total += micros
    if (functionName === '(idle)') { idle += micros; continue }
    const who = owner(url, functionName)
    byOwner.set(who, (byOwner.get(who) ?? 0) + micros)
    const fn = `${functionName || '(anonymous)'} ${who}${url ? `:${lineNumber + 1}` : ''}`
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + micros)
  }
  // Inclusive: a sample counts once for every package on its stack (a plugin's hook and what it calls).
  const parent = new Map<number, number>()
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  const inclusive = new Map<string, number>()
  for (const [id, micros] of selfMicros) {
    if (byId.get(id)!.callFrame.functionName === '(idle)') continue
    const seen = new Set<string>()
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const { url, functionName } = byId.get(at)!.callFrame
      if (url) seen.add(owner(url, functionName))
    }
    for (const who of seen) inclusive.set(who, (inclusive.get(who) ?? 0) + micros)
  }
  const busy = total - idle
  const pct = (v: number) => `${(100 * v / busy).toFixed(1)}%`
  const list = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]).slice(0, top).map(([k, v]) => `  ${pct(v).padStart(6)}  ${k}`).join('\n')
  console.log(`${path.basename(file)}: ${(busy / 1000).toFixed(0)} ms busy, ${(idle / 1000).toFixed(0)} ms idle (shares are of the busy time, self time only)`)
  console.log(`\nby package or folder\n${list(byOwner)}`)
  console.log(`\nby package or folder, inclusive (with what it calls)\n${list(inclusive)}`)
  console.log(`\nby function\n${list(byFunction)}\n`)
}

const files = process.argv.slice(2)
for (const file of files.length > 0 ? files : [newestProfile()]) summarise(file)
