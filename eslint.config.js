import neostandard from 'neostandard'

export default neostandard({
  ts: true,
  ignores: ['node_modules', 'dist', 'data', '.tap', 'db/migrations', 'coverage', 'clients/typescript/schema.d.ts']
})
