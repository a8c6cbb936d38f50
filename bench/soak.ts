/**
 * `npm run bench:soak`: the API under a steady mixed load for SOAK_DURATION
 * seconds (default 300), its RSS sampled every 10 s; reports the first, last,
 * smallest and largest sample and the drift: the median of the last minute's
 * samples against the first minute's. Issue 9: RSS stable within 10% over a
 * 5-minute soak.
 *
 * Same stack choice as `npm run bench` (BENCH_STACK=embedded forces the
 * embedded one), the API compiled likewise (BENCH_FROM_SOURCE=1: under tsx). The load runs at fixed rates, not flat out, so it is the
 * steady traffic of a busy instance rather than a throughput test:
 * /health, session-token reads, access-token reads, a mutating route (with its
 * activity rows) and a login now and then. Writes bench/results/soak.json.
 */
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { login, loginUser, requests } from './lib/api.ts'
import { buildApi } from './lib/build.ts'
import { measureTogether, warmUp, type Load } from './lib/load.ts'
import { rssMb } from './lib/proc.ts'
import { environment, median, round, type SoakResult } from './lib/report.ts'
import { resultsDir, startApi, type Server } from './lib/servers.ts'
import { seedLoginUser, seedUsers } from './lib/seed.ts'
import { selectStack } from './lib/stack.ts'

const durationSeconds = Number(process.env.SOAK_DURATION ?? 300)
const SAMPLE_EVERY_MS = 10_000

const log = (message: string) => console.error(`[soak ${new Date().toISOString().slice(11, 19)}] ${message}`)

async function main (): Promise<void> {
  const stack = await selectStack({ embedded: process.env.BENCH_STACK === 'embedded' })
  let server: Server | undefined
  const fromSource = process.env.BENCH_FROM_SOURCE === '1'
  const building = fromSource ? Promise.resolve(undefined) : buildApi()
  building.catch(() => { /* awaited below */ })
  const shutdown = async () => {
    await server?.stop()
    await stack.dispose()
    ;(await building.catch(() => undefined))?.dispose()
  }
  const onSignal = () => { log('interrupted, cleaning up'); shutdown().catch(() => {}).finally(() => process.exit(130)) }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)

  const env = environment()
  log(`stack: ${stack.label} (${stack.scratch}); ${durationSeconds} s of mixed load; Node ${env.node}; API ${fromSource ? 'from source under tsx' : 'compiled (as npm run start:prod)'}`)
  let result: SoakResult
  try {
    const handle = await stack.open()
    try {
      await seedUsers(handle, 1000)
      await seedLoginUser(handle, loginUser.email, loginUser.password)
    } finally {
      await handle.close()
    }
    server = await startApi('api-soak', stack.env, (await building)?.entry)
    const reqs = requests(await login(server))
    await warmUp(server, [reqs.health, reqs.sessionRead, reqs.accessRead, reqs.updateTheme, reqs.tokenInfo])
    await warmUp(server, [reqs.login], 10)
    await sleep(2000)
    const idleRssMb = rssMb(server.pid)
    log(`idle RSS after start and warm-up: ${idleRssMb} MB`)

    const steady = (name: string, spec: Omit<Load, 'connections' | 'duration'>, connections: number, rate: number) =>
      ({ name, load: { ...spec, connections, rate, duration: durationSeconds } })
    const loads = [
      steady('GET /health', reqs.health, 2, 100),
      steady('profile read, session token', reqs.sessionRead, 8, 500),
      steady('profile read, access token', reqs.accessRead, 4, 200),
      steady('POST /settings/update-theme', reqs.updateTheme, 2, 50),
      steady('POST /auth/token-info', reqs.tokenInfo, 2, 50),
      steady('login with password', reqs.login, 1, 2)
    ]

    const samples: SoakResult['samples'] = []
    const started = Date.now()
    const pid = server.pid
    const sampler = setInterval(() => {
      const sample = { seconds: Math.round((Date.now() - started) / 1000), rssMb: rssMb(pid) }
      samples.push(sample)
      log(`${sample.seconds} s: RSS ${sample.rssMb} MB`)
    }, SAMPLE_EVERY_MS)
    let measured
    try {
      measured = await measureTogether(server, loads.map((l) => l.load))
    } finally {
      clearInterval(sampler)
    }
    if (samples.length === 0) samples.push({ seconds: Math.round((Date.now() - started) / 1000), rssMb: rssMb(pid) })

    const rss = samples.map((s) => s.rssMb)
    const windowSamples = Math.max(1, Math.min(60_000 / SAMPLE_EVERY_MS, Math.floor(rss.length / 3)))
    const firstWindow = median(rss.slice(0, windowSamples))
    const lastWindow = median(rss.slice(-windowSamples))
    result = {
      date: env.date,
      stack: stack.label,
      node: env.node,
      durationSeconds,
      idleRssMb,
      samples,
      firstRssMb: rss[0],
      lastRssMb: rss[rss.length - 1],
      minRssMb: Math.min(...rss),
      maxRssMb: Math.max(...rss),
      windowSamples,
      driftPercent: round(((lastWindow - firstWindow) / firstWindow) * 100, 1),
      loads: loads.map((l, i) => ({ name: l.name, requests: measured[i].requests, errors: measured[i].errors, p99: measured[i].p99 }))
    }
  } finally {
    await shutdown()
  }

  console.log(`\nSoak: ${result.stack}; ${durationSeconds} s; Node ${result.node}; ${env.cpu}; ${result.date}.`)
  console.log(`Idle RSS ${result.idleRssMb} MB. Under load, every ${SAMPLE_EVERY_MS / 1000} s: first ${result.firstRssMb} MB, last ${result.lastRssMb} MB, ` +
    `min ${result.minRssMb} MB, max ${result.maxRssMb} MB.`)
  console.log(`Drift (median of the last ${result.windowSamples} samples against the first ${result.windowSamples}): ${result.driftPercent}% ` +
    `(target within 10% over 5 minutes: ${durationSeconds < 300 ? 'soak too short to tell' : Math.abs(result.driftPercent) <= 10 ? 'met' : 'NOT MET'}).`)
  console.log(`Samples: ${result.samples.map((s) => s.rssMb).join(' ')}\n`)
  console.log('| load | requests | errors | p99 ms |\n|---|---:|---:|---:|')
  for (const l of result.loads) console.log(`| ${l.name} | ${l.requests} | ${l.errors} | ${l.p99} |`)
  const file = path.join(resultsDir, 'soak.json')
  writeFileSync(file, JSON.stringify(result, null, 2) + '\n')
  console.log(`\nWritten: ${path.relative(process.cwd(), file)}`)
}

main().catch((error: unknown) => {
  console.error(error)
  process.exitCode = 1
})
