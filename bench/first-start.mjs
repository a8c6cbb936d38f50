#!/usr/bin/env node
// Times a first start as on a fresh clone: `node --import tsx server.ts` on an empty
// DATA_DIR (embedded: PGlite init + migrations) or, with DATABASE_URL, on an empty
// database; prints the milliseconds to the first GET /health 200 and the RSS 5 s later.
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
const started = performance.now()
const child = spawn(process.execPath, ['--import', 'tsx', 'server.ts'], { env, stdio: 'ignore' })
let ms
while (ms === undefined) {
  if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}`)
  const ok = await fetch(`http://127.0.0.1:${port}/health`).then((r) => r.ok, () => false)
  if (ok) ms = performance.now() - started
  else await new Promise((resolve) => setTimeout(resolve, 25))
}
await new Promise((resolve) => setTimeout(resolve, 5000))
const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))[1]) / 1024
child.kill('SIGTERM')
await new Promise((resolve) => child.once('exit', resolve))
rmSync(dataDir, { recursive: true, force: true })
if (stack === 'postgres') execFileSync('psql', ['-h', '127.0.0.1', '-U', 'postgres', '-qc', `DROP DATABASE ${database}`])
console.log(JSON.stringify({ stack, first_health_ms: Math.round(ms), rss_mb: Math.round(rss) }))
