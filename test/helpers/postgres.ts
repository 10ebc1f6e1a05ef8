import { randomBytes } from 'node:crypto'
import pg from 'pg'

const host = '127.0.0.1'
const port = 5432
const user = 'postgres'
/** the databases a fresh one is created from (`CREATE DATABASE` needs a connection to some database) */
const maintenanceDatabases = ['postgres', 'test']

function urlOf (database: string): string {
  return `postgres://${user}@${host}:${port}/${database}`
}

async function connectToMaintenance (): Promise<{ client: pg.Client, database: string } | { error: Error }> {
  let lastError = new Error('no maintenance database')
  for (const database of maintenanceDatabases) {
    const client = new pg.Client({ connectionString: urlOf(database), connectionTimeoutMillis: 2000 })
    client.on('error', () => {})
    try {
      await client.connect()
      return { client, database }
    } catch (error) {
      lastError = error as Error
      await client.end().catch(() => {})
    }
  }
  return { error: lastError }
}

/**
 * A FRESH, empty PostgreSQL database of its own for the caller (`vg_test_<pid>_<random>`),
 * on the real server at 127.0.0.1:5432 (user postgres, trust auth); `cleanup()` drops that
 * database and no other. Without a server the tests skip LOUDLY, unless REQUIRE_POSTGRES=1
 * (set by .ci/run), which turns a missing PostgreSQL into a failure.
 */
export async function postgresForTests (): Promise<{ url: string, cleanup: () => Promise<void> } | { skip: string }> {
  const maintenance = await connectToMaintenance()
  if ('error' in maintenance) {
    const message = `POSTGRESQL NOT AVAILABLE at ${host}:${port} as ${user} (${maintenance.error.message}): the database-mode tests are SKIPPED. Start PostgreSQL there (trust auth).`
    if (process.env.REQUIRE_POSTGRES === '1') throw new Error(`${message} REQUIRE_POSTGRES=1 makes this a failure.`)
    process.stderr.write(`\n!!!!!!!! ${message}\n\n`)
    return { skip: message }
  }
  const name = `vg_test_${process.pid}_${randomBytes(4).toString('hex')}`
  try {
    await maintenance.client.query(`CREATE DATABASE ${name}`)
  } finally {
    await maintenance.client.end().catch(() => {})
  }
  let dropped = false
  return {
    url: urlOf(name),
    async cleanup () {
      if (dropped) return
      dropped = true
      const again = await connectToMaintenance()
      if ('error' in again) return
      try {
        // FORCE: a gateway under test that did not close (a failed test) must not keep it alive.
        await again.client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
      } finally {
        await again.client.end().catch(() => {})
      }
    }
  }
}
