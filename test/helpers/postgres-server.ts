import { execFile } from 'node:child_process'
import { existsSync, readdirSync } from 'node:fs'
import { chown, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import pg from 'pg'
import type { HasTeardown } from './gateway.ts'
import { freePort } from './server-process.ts'

const run = promisify(execFile)

/**
 * A throw-away PostgreSQL server of the test's own (initdb into a temp dir, trust auth, on a
 * spare loopback port) that the test can stop and start again: the shared server at 5432
 * must never be taken down. PostgreSQL refuses to run as root, so as root it runs as the
 * `postgres` user (runuser). Without initdb/pg_ctl the tests skip loudly, unless REQUIRE_POSTGRES=1.
 */
export interface OwnPostgres {
  /** its `postgres` database */
  url: string
  /** starts it (again, same port and data) and waits until it answers */
  start (): Promise<void>
  /** stops it at once (`-m immediate`: every connection cut, as in a crash) */
  stop (): Promise<void>
}

function findBinary (name: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir !== '' && existsSync(join(dir, name))) return join(dir, name)
  }
  const root = '/usr/lib/postgresql'
  if (!existsSync(root)) return null
  for (const version of readdirSync(root).sort().reverse()) {
    const candidate = join(root, version, 'bin', name)
    if (existsSync(candidate)) return candidate
  }
  return null
}

export async function ownPostgresServer (t: HasTeardown): Promise<OwnPostgres | { skip: string }> {
  const initdb = findBinary('initdb')
  const pgCtl = findBinary('pg_ctl')
  if (initdb === null || pgCtl === null) {
    const message = 'initdb/pg_ctl NOT FOUND (PATH, /usr/lib/postgresql/*/bin): the PostgreSQL outage tests are SKIPPED. Install PostgreSQL.'
    if (process.env.REQUIRE_POSTGRES === '1') throw new Error(`${message} REQUIRE_POSTGRES=1 makes this a failure.`)
    process.stderr.write(`\n!!!!!!!! ${message}\n\n`)
    return { skip: message }
  }
  const asRoot = process.getuid?.() === 0
  const runAs = async (binary: string, args: string[]): Promise<void> => {
    if (asRoot) await run('runuser', ['-u', 'postgres', '--', binary, ...args])
    else await run(binary, args)
  }
  const dir = await mkdtemp(join(tmpdir(), 'vg-postgres-'))
  if (asRoot) {
    const { stdout } = await run('id', ['-u', 'postgres'])
    const { stdout: group } = await run('id', ['-g', 'postgres'])
    await chown(dir, Number(stdout.trim()), Number(group.trim()))
  }
  const data = join(dir, 'data')
  await runAs(initdb, ['-D', data, '-U', 'postgres', '--auth=trust', '--no-sync'])
  const port = await freePort()
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`
  let running = false

  async function start (): Promise<void> {
    // fsync off: a test server, its data is thrown away.
    await runAs(pgCtl!, ['-D', data, '-l', join(dir, 'server.log'), '-w', '-t', '30', '-o', `-c listen_addresses=127.0.0.1 -c port=${port} -k ${dir} -c fsync=off`, 'start'])
    running = true
    const client = new pg.Client({ connectionString: url })
    await client.connect()
    await client.end()
  }

  async function stop (): Promise<void> {
    if (!running) return
    running = false
    await runAs(pgCtl!, ['-D', data, '-m', 'immediate', '-w', 'stop'])
  }

  t.teardown(async () => {
    await stop().catch(() => {})
    await rm(dir, { recursive: true, force: true })
  })
  await start()
  return { url, start, stop }
}
