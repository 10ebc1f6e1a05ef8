import { existsSync } from 'node:fs'
import { pino } from 'pino'
import { runMigrations } from '../src/features/database/migrate.ts'

/**
 * `npm run migrate`: applies the pending migrations of `migrations/` to DATABASE_URL
 * (the gateway also does this at start in database mode; this is for a deploy step that
 * wants the schema ready before the new version rolls out). Safe next to starting
 * replicas: they all queue behind one PostgreSQL advisory lock.
 */
// As server.ts: a .env next to it is read (the environment wins).
if (existsSync('.env')) process.loadEnvFile('.env')
const databaseUrl = process.env.DATABASE_URL ?? ''
if (databaseUrl === '') {
  process.stderr.write('npm run migrate: set DATABASE_URL (postgres://user:password@host:5432/database)\n')
  process.exit(2)
}
const log = pino({ level: 'info', base: null })
try {
  const applied = await runMigrations({ databaseUrl, log })
  process.stdout.write(applied.length === 0 ? 'migrations: the schema is up to date\n' : `migrations: applied ${applied.join(', ')}\n`)
} catch (error) {
  process.stderr.write(`npm run migrate failed: ${(error as Error).message}\n`)
  process.exit(1)
}
