import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import { root } from '../helpers/processes.ts'

/**
 * The Dockerfile without a Docker engine: hadolint when it is installed, and
 * always the structural rules the image relies on (multi-stage build,
 * production dependencies only, non-root, HEALTHCHECK). hadolint is not in
 * Debian's archive and its npm wrapper downloads a binary from GitHub at
 * install time, which this environment cannot reach (see README).
 */

interface Instruction { keyword: string, args: string, stage: number }

/** Instructions in order, continuation lines joined, comments dropped, each tagged with its stage (0 = first FROM). */
function parseDockerfile (text: string): Instruction[] {
  const instructions: Instruction[] = []
  let stage = -1
  let pending = ''
  for (const line of text.split('\n')) {
    const trimmed = line.trim()
    if (pending === '' && (trimmed === '' || trimmed.startsWith('#'))) continue
    if (pending !== '' && trimmed.startsWith('#')) continue
    if (trimmed.endsWith('\\')) {
      pending += trimmed.slice(0, -1) + ' '
      continue
    }
    const full = (pending + trimmed).trim()
    pending = ''
    const [keyword, ...rest] = full.split(/\s+/)
    const upper = keyword.toUpperCase()
    if (upper === 'FROM') stage++
    instructions.push({ keyword: upper, args: rest.join(' '), stage })
  }
  return instructions
}

const dockerfile = readFileSync(path.join(root, 'Dockerfile'), 'utf8')
const instructions = parseDockerfile(dockerfile)
const stages = instructions.filter((i) => i.keyword === 'FROM')
const last = stages.length - 1
const inStage = (stage: number, keyword: string) => instructions.filter((i) => i.stage === stage && i.keyword === keyword)

t.test('multi-stage: build with dev dependencies, run with production ones', async (t) => {
  t.ok(stages.length >= 2, 'at least two stages')
  for (const from of stages) {
    const image = from.args.split(/\s+/)[0]
    t.match(image, /^[\w./-]+:[\w.-]+$/, `${image} is pinned to a tag`)
    t.notMatch(image, /:latest$/, 'not :latest')
  }
  const build = stages.findIndex((s) => /\bAS\s+build\b/i.test(s.args))
  t.ok(build >= 0 && build < last, 'a build stage before the runtime stage')
  const buildRuns = inStage(build, 'RUN').map((r) => r.args)
  t.ok(buildRuns.some((r) => /\bnpm ci\b/.test(r) && !/--omit=dev/.test(r)), 'the build stage installs dev dependencies (tsc)')
  t.ok(buildRuns.some((r) => /\bnpm run build\b/.test(r)), 'and compiles')

  const runtimeRuns = inStage(last, 'RUN').map((r) => r.args)
  t.ok(runtimeRuns.some((r) => /\bnpm ci\b[^&]*--omit=dev/.test(r)), 'the runtime stage installs production dependencies only')
  t.ok(inStage(last, 'COPY').some((c) => /--from=build\s+\/app\/dist\s/.test(c.args)), 'and takes only the compiled code from the build')
  t.same(instructions.filter((i) => i.keyword === 'ADD'), [], 'COPY, never ADD')

  // npm ci runs the postinstall (patch-package), which fails without the patches.
  for (const [name, stage] of [['build', build], ['runtime', last]] as const) {
    const copiesPatches = instructions.findIndex((i) => i.stage === stage && i.keyword === 'COPY' && /^patches\s/.test(i.args))
    const installs = instructions.findIndex((i) => i.stage === stage && i.keyword === 'RUN' && /\bnpm ci\b/.test(i.args))
    t.ok(copiesPatches >= 0 && copiesPatches < installs, `the ${name} stage copies patches/ before npm ci`)
  }
  const manifest = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'))
  const [patch, template] = manifest.scripts.postinstall.split(' && ')
  t.equal(patch, 'patch-package', 'npm ci applies patches/')
  // Then it builds the embedded database's template (db/template.ts); neither stage
  // has copied scripts/ at `npm ci`, and that step must never fail an install.
  const bare = mkdtempSync(path.join(tmpdir(), 'postinstall-'))
  t.teardown(() => rmSync(bare, { recursive: true, force: true }))
  const run = spawnSync('sh', ['-c', template], { cwd: bare, encoding: 'utf8' })
  t.equal(run.status, 0, `the template step exits 0 without scripts/ (${run.stderr.trim()})`)
  t.ok(manifest.dependencies['patch-package'], 'a production dependency, so the runtime stage (--omit=dev) has it')
})

t.test('runs as a non-root user, with a health check and the compiled server', async (t) => {
  const users = inStage(last, 'USER')
  t.equal(users.length, 1, 'one USER in the runtime stage')
  t.notMatch(users[0]?.args ?? 'root', /^(root|0)(:|$)/, `runs as ${users[0]?.args}, not root`)
  const userAt = instructions.indexOf(users[0])
  const cmd = inStage(last, 'CMD').at(-1)!
  t.ok(instructions.indexOf(cmd) > userAt, 'the server starts after USER')

  const health = inStage(last, 'HEALTHCHECK')
  t.equal(health.length, 1, 'a HEALTHCHECK')
  t.match(health[0]?.args, /--interval=\d+s/)
  t.match(health[0]?.args, /CMD \[.*\/health/, 'probing GET /health (exec form)')

  t.same(JSON.parse(cmd.args), ['node', 'dist/server.js'], 'CMD in exec form: node gets SIGTERM itself (SR-42)')
  t.same(inStage(last, 'EXPOSE').map((e) => e.args), ['3000'])
  const env = inStage(last, 'ENV').map((e) => e.args).join(' ')
  t.match(env, /NODE_ENV=production/)
  t.notMatch(env, /SECRET|PASSWORD|TOKEN/i, 'no secret baked into the image')
})

t.test('what the image runs exists in the build', async (t) => {
  const buildConfig = JSON.parse(readFileSync(path.join(root, 'tsconfig.build.json'), 'utf8')) as { include: string[] }
  t.ok(buildConfig.include.includes('*.ts') && buildConfig.include.includes('db'), 'server.ts and db/ are compiled (dist/server.js, dist/db/*.js)')
  for (const source of ['server.ts', 'db/migrate.ts', 'db/seed.ts', 'scripts/copy-assets.mjs']) {
    t.ok(existsSync(path.join(root, source)), `${source} exists`)
  }
  t.match(readFileSync(path.join(root, 'scripts/copy-assets.mjs'), 'utf8'), /db\/migrations/, 'the migrations are copied next to the compiled code')

  const ignored = readFileSync(path.join(root, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'))
  for (const entry of ['.git', '.env', 'node_modules', 'dist', 'data']) t.ok(ignored.includes(entry), `${entry} stays out of the build context`)
  for (const needed of ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'scripts', 'db', 'plugins', 'routes', 'schemas', 'workers', 'i18n', '*.ts']) {
    t.notOk(ignored.includes(needed), `${needed} is in the build context`)
  }
})

const hadolint = spawnSync('hadolint', ['--version'], { stdio: 'ignore' }).status === 0
t.test('hadolint', { skip: hadolint ? false : 'hadolint is not installed: not in Debian\'s archive, and its npm wrapper downloads the binary from GitHub (unreachable here); the structural checks above stand in' }, async (t) => {
  const result = spawnSync('hadolint', [path.join(root, 'Dockerfile')], { encoding: 'utf8' })
  t.equal(result.status, 0, 'no findings', { output: result.stdout + result.stderr })
})
