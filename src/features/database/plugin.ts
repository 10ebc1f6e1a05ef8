import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import pg from 'pg'
import { createOutageTracker } from '../store/outage-tracker.ts'

export interface DatabaseOptions {
  /** DATABASE_URL; empty: file mode, no database (`fastify.database` is null) */
  databaseUrl: string
  /** how often the pool is probed with `SELECT 1` for `health()` */
  healthCheckMs?: number
  /** connections in the pool (admin API, key usage batches, the periodic refresh; never the request path) */
  maxConnections?: number
}

export interface Database {
  pool: pg.Pool
  /**
   * The database as last seen, without a query: `degraded` from the first failure (a probe,
   * the change listener, any feature's query) until the next success. Degraded never stops
   * the gateway serving the tenants it holds; /readyz shows it.
   */
  health (): 'ok' | 'degraded'
  /** a feature's query failed for a reason of the database's (connection, timeout): degraded */
  failed (error: unknown): void
  /** a feature reached the database: ok again */
  recovered (): void
}

declare module 'fastify' {
  interface FastifyInstance {
    /** database mode's PostgreSQL, or null in file mode */
    database: Database | null
  }
}

async function databasePlugin (fastify: FastifyInstance, options: DatabaseOptions): Promise<void> {
  if (options.databaseUrl === '') {
    fastify.decorate('database', null)
    return
  }
  const pool = new pg.Pool({
    connectionString: options.databaseUrl,
    max: options.maxConnections ?? 5,
    // A database that is gone must fail an admin call or a refresh quickly, not hang it.
    connectionTimeoutMillis: 2000,
    query_timeout: 10_000,
    idleTimeoutMillis: 30_000,
    application_name: 'video-gateway'
  })
  const outage = createOutageTracker({
    dependency: 'database',
    log: fastify.log,
    policy: 'tenants and keys as last loaded keep being served; admin changes fail until it is back'
  })
  // An idle client that loses its connection emits on the pool: without a listener that is an uncaught error.
  pool.on('error', (error) => { outage.failed(error) })
  try {
    await pool.query('SELECT 1')
  } catch (error) {
    await pool.end()
    // Only the message: a connection error can carry the URL, and with it a password.
    throw new Error(`DATABASE_URL: cannot connect to PostgreSQL (${(error as Error).message})`, { cause: error })
  }

  const healthCheckMs = options.healthCheckMs ?? 2000
  let probing = false
  const probe = setInterval(() => {
    if (probing) return
    probing = true
    pool.query('SELECT 1').then(() => { outage.recovered() }, (error: unknown) => { outage.failed(error) }).finally(() => { probing = false })
  }, healthCheckMs)
  probe.unref()

  const database: Database = {
    pool,
    health: () => outage.down ? 'degraded' : 'ok',
    failed: (error) => { outage.failed(error) },
    recovered: () => { outage.recovered() }
  }
  fastify.decorate('database', database)
  fastify.addHook('onClose', async () => {
    clearInterval(probe)
    await pool.end()
  })
}

export default fp(databasePlugin, { name: 'database', fastify: '5.x' })
