// Prints the README's configuration table from the one schema in config.ts;
// with --write, replaces the table between the markers in README.md.
import { readFileSync, writeFileSync } from 'node:fs'
import { ConfigSchema } from '../config.ts'

const rows = Object.entries(ConfigSchema.properties).map(([name, schema]) => {
  const s = schema as { default?: unknown, description?: string }
  const def = s.default === undefined ? '(unset)' : s.default === '' ? '(empty)' : `\`${String(s.default)}\``
  return `| \`${name}\` | ${def} | ${s.description ?? ''} |`
})
const table = ['| Variable | Default | Meaning |', '|---|---|---|', ...rows].join('\n')

if (process.argv.includes('--write')) {
  const readme = readFileSync('README.md', 'utf8')
  const updated = readme.replace(/<!-- config:start -->[\s\S]*<!-- config:end -->/, `<!-- config:start -->\n${table}\n<!-- config:end -->`)
  writeFileSync('README.md', updated)
} else {
  console.log(table)
}
