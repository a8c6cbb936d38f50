#!/usr/bin/env node
// Runs the whole suite twice: on real PostgreSQL + Redis, then on the embedded
// defaults (PGlite + in-process store). Prints one closing line with the real
// counts of both runs: `N passed, N failed, N skipped`. Extra arguments go to tap
// (e.g. `npm test -- test/auth`). TEST_STACKS=postgres runs one stack only.
import { spawn } from 'node:child_process'

const stacks = (process.env.TEST_STACKS ?? 'postgres,embedded').split(',').map((s) => s.trim()).filter(Boolean)
const args = process.argv.slice(2)
const totals = { pass: 0, fail: 0, skip: 0 }
const failedFiles = []
let failedRun = false

for (const stack of stacks) {
  console.log(`\n=== test suite on the ${stack} stack ===\n`)
  const code = await new Promise((resolve) => {
    const child = spawn(process.execPath, ['node_modules/tap/dist/esm/run.mjs', ...args], {
      env: { ...process.env, TEST_DB: stack },
      stdio: ['ignore', 'pipe', 'inherit']
    })
    let tail = ''
    let partial = ''
    child.stdout.on('data', (chunk) => {
      process.stdout.write(chunk)
      const text = chunk.toString()
      tail = (tail + text).slice(-4000)
      // Remember each failed test file (tap's top-level "not ok N - file" lines) so the
      // closing lines name them, where a CI log's tail shows them.
      const lines = (partial + text).split('\n')
      partial = lines.pop() ?? ''
      for (const line of lines) {
        const failed = /^not ok \d+ - (\S+)/.exec(line)
        if (failed) failedFiles.push(`${stack}: ${failed[1]}`)
      }
    })
    child.on('close', (exitCode) => {
      const summary = [...tail.matchAll(/# \{ total: (\d+), pass: (\d+)(?:, fail: (\d+))?(?:, skip: (\d+))?(?:, todo: (\d+))? \}/g)].pop()
      if (summary) {
        totals.pass += Number(summary[2])
        totals.fail += Number(summary[3] ?? 0)
        totals.skip += Number(summary[4] ?? 0)
      } else {
        totals.fail += 1
      }
      resolve(exitCode)
    })
  })
  if (code !== 0) failedRun = true
}

if (failedFiles.length > 0) console.log(`\nfailed files:\n  ${failedFiles.join('\n  ')}`)
console.log(`\n${totals.pass} passed, ${totals.fail} failed, ${totals.skip} skipped`)
process.exit(failedRun || totals.fail > 0 ? 1 : 0)
