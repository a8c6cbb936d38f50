// tsc compiles TypeScript only; the runtime also reads these files next to the code.
import { cpSync } from 'node:fs'

for (const dir of ['i18n', 'db/migrations']) {
  cpSync(dir, `dist/${dir}`, { recursive: true, filter: (src) => !src.endsWith('.ts') })
}
cpSync('package.json', 'dist/package.json')
