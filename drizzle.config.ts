import { defineConfig } from 'drizzle-kit'

// `drizzle-kit generate` diffs db/schema against the snapshots in db/migrations;
// `generate` and `check` need no database. `migrate`/`studio` use DATABASE_URL.
export default defineConfig({
  dialect: 'postgresql',
  schema: './db/schema/index.ts',
  out: './db/migrations',
  dbCredentials: { url: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres' },
  strict: true,
  verbose: true
})
