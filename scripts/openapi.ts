// Writes the OpenAPI document the app serves at /api-docs/json to openapi.json
// (or the path given as the first argument), without listening: the app is built
// on a throw-away embedded database in a temporary folder, so nothing needs to run.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { buildApp } from '../app.ts'
import { loadConfig } from '../config.ts'

const out = process.argv[2] ?? 'openapi.json'
const dataDir = mkdtempSync(path.join(tmpdir(), 'openapi-'))
try {
  const app = await buildApp(loadConfig({
    NODE_ENV: 'test',
    LOG_LEVEL: 'silent',
    DATA_DIR: dataDir,
    JWT_SECRET_KEY: 'openapi-dump-secret-of-at-least-32-characters',
    METRICS_ENABLED: 'true'
  }))
  const doc = app.swagger()
  await app.close()
  writeFileSync(out, JSON.stringify(doc, null, 2) + '\n')
  console.log(`${out}: ${Object.values(doc.paths ?? {}).reduce((n, item) => n + Object.keys(item ?? {}).length, 0)} operations`)
} finally {
  rmSync(dataDir, { recursive: true, force: true })
}
