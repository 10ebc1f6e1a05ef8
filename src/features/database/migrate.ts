import { fileURLToPath } from 'node:url'
import type { FastifyBaseLogger } from 'fastify'
import { runner } from 'node-pg-migrate'

/** The top-level `migrations/` folder: plain SQL files (`-- Up Migration` / `-- Down Migration`). */
export const migrationsDir = fileURLToPath(new URL('../../../migrations', import.meta.url))

/** node-pg-migrate's own bookkeeping table. */
export const migrationsTable = 'pgmigrations'

export interface RunMigrationsOptions {
  databaseUrl: string
  log: Pick<FastifyBaseLogger, 'info' | 'warn' | 'error'>
  /** default: the repository's `migrations/` */
  dir?: string
}

/**
 * Applies every pending migration, in one transaction. node-pg-migrate holds a
 * PostgreSQL advisory lock for the whole run; `wait` (its default is `fail`,
 * which would make the second of two replicas starting together exit with
 * "Another migration is already running") queues a concurrent start behind the
 * first one, which then finds nothing left to do. Returns the names it applied.
 */
export async function runMigrations (options: RunMigrationsOptions): Promise<string[]> {
  const { log } = options
  const applied = await runner({
    databaseUrl: options.databaseUrl,
    dir: options.dir ?? migrationsDir,
    migrationsTable,
    direction: 'up',
    singleTransaction: true,
    advisoryLockMode: 'wait',
    checkOrder: true,
    // node-pg-migrate's chatter ("> Migrating files") at debug level would need pino's; info is one line per run.
    logger: {
      debug: () => {},
      info: (message: string) => { log.info({ feature: 'database' }, `migrations: ${message}`) },
      warn: (message: string) => { log.warn({ feature: 'database' }, `migrations: ${message}`) },
      error: (message: string) => { log.error({ feature: 'database' }, `migrations: ${message}`) }
    }
  })
  return applied.map((migration) => migration.name)
}
