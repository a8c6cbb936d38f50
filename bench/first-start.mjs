#!/usr/bin/env node
// Times a first start as on a fresh clone: `node --import tsx server.ts` on an empty
// DATA_DIR (embedded: PGlite init + migrations) or, with DATABASE_URL, on an empty
// database; prints the milliseconds to the first GET /health 200, the CPU seconds the
// server process used until then (steadier than wall time on a shared machine), and
// its RSS 5 s later and its peak RSS until then (VmHWM). Then starts it once more on the
// same data (the usual start). It runs the code of the working directory, so
// `cd <other checkout> && node <this file>` measures another checkout with the same method.
// Usage: node bench/first-start.mjs [embedded|postgres]
import { spawn, execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'

const stack = process.argv[2] ?? 'embedded'
const dataDir = mkdtempSync(path.join(tmpdir(), 'first-start-'))
const port = 20000 + Math.floor(Math.random() * 20000)
const database = `first_start_${process.pid}`
const env = { ...process.env, NODE_ENV: 'development', DATA_DIR: dataDir, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn' }
delete env.DATABASE_URL
delete env.REDIS_URL
if (stack === 'postgres') {
  execFileSync('psql', ['-h', '127.0.0.1', '-U', 'postgres', '-qc', `CREATE DATABASE ${database}`])
  env.DATABASE_URL = `postgres://postgres@127.0.0.1:5432/${database}`
  env.REDIS_URL = 'redis://127.0.0.1:6379'
  env.REDIS_KEY_PREFIX = `${database}:`
}

// utime + stime of a process, in seconds (/proc/<pid>/stat fields 14 and 15, in clock ticks of 1/100 s).
const cpuSeconds = (pid) => {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100
}

async function start () {
  const started = performance.now()
  const child = spawn(process.execPath, ['--import', 'tsx', 'server.ts'], { env, stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (chunk) => { stderr = (stderr + chunk).slice(-2000) })
  let ms
  let cpu
  while (ms === undefined) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}:\n${stderr}`)
    const ok = await fetch(`http://127.0.0.1:${port}/health`).then((r) => r.ok, () => false)
    if (ok) {
      ms = performance.now() - started
      cpu = cpuSeconds(child.pid)
    } else await new Promise((resolve) => setTimeout(resolve, 25))
  }
  await new Promise((resolve) => setTimeout(resolve, 5000))
  const status = readFileSync(`/proc/${child.pid}/status`, 'utf8')
  const rss = Number(/VmRSS:\s+(\d+)/.exec(status)[1]) / 1024
  const peak = Number(/VmHWM:\s+(\d+)/.exec(status)[1]) / 1024
  child.kill('SIGTERM')
  await new Promise((resolve) => child.once('exit', resolve))
  return { health_ms: Math.round(ms), cpu_s: Math.round(cpu * 10) / 10, rss_mb: Math.round(rss), peak_mb: Math.round(peak) }
}

try {
  const first = await start()
  const again = await start()
  console.log(JSON.stringify({ stack, first_health_ms: first.health_ms, first_cpu_s: first.cpu_s, rss_mb: first.rss_mb, peak_mb: first.peak_mb, again }))
} finally {
  rmSync(dataDir, { recursive: true, force: true })
  if (stack === 'postgres') execFileSync('psql', ['-h', '127.0.0.1', '-U', 'postgres', '-qc', `DROP DATABASE ${database}`])
}
