import { existsSync, writeFileSync } from 'node:fs'
import { pino } from 'pino'
import pg from 'pg'
import { runMigrations } from '../src/features/database/migrate.ts'
import { importTenants, TenantExistsError } from '../src/features/admin/store.ts'
import { exportTenantsFile } from '../src/features/admin/tenants-file.ts'
import { newKeyId } from '../src/features/admin/routes.ts'
import { buildTenantRegistry, readTenantsFile, tenantKeyHash, TenantsFileError } from '../src/features/tenants/registry.ts'
import { randomBytes } from 'node:crypto'

/**
 * `npm run tenants -- <command>`, database mode's tenants from the command line:
 *   import <tenants.json>   seed DATABASE_URL from a tenants file, once (all or nothing)
 *   export [--out <file>]   the database as a valid tenants file (stdout, or the file)
 *   admin-token             a new admin token, and the hash for ADMIN_TOKENS
 */
const usage = [
  'usage: npm run tenants -- import <tenants.json>   seed DATABASE_URL from a tenants file (once)',
  '       npm run tenants -- export [--out <file>]   write the database as a tenants file',
  '       npm run tenants -- admin-token             make an admin token and its ADMIN_TOKENS hash',
  ''
].join('\n')

function fail (message: string, status = 1): never {
  process.stderr.write(`npm run tenants: ${message}\n`)
  process.exit(status)
}

// As server.ts: a .env next to it is read (the environment wins).
if (existsSync('.env')) process.loadEnvFile('.env')
const [command, ...args] = process.argv.slice(2)

if (command === 'admin-token') {
  const token = 'vga_' + randomBytes(32).toString('base64url')
  process.stdout.write([
    'Admin token (shown once; give it to whoever runs the admin API, the gateway keeps only its hash):',
    '',
    `  ${token}`,
    '',
    'Add its hash to ADMIN_TOKENS (comma-separated, several allowed for rotation):',
    '',
    `  ADMIN_TOKENS=${tenantKeyHash(token)}`,
    ''
  ].join('\n'))
  process.exit(0)
}

if (command !== 'import' && command !== 'export') {
  process.stderr.write(usage)
  process.exit(2)
}
const databaseUrl = process.env.DATABASE_URL ?? ''
if (databaseUrl === '') fail('set DATABASE_URL (postgres://user:password@host:5432/database)', 2)

const log = pino({ level: 'warn', base: null }, pino.destination(2))
const pool = new pg.Pool({ connectionString: databaseUrl, max: 1, connectionTimeoutMillis: 5000 })
pool.on('error', () => {})
try {
  // The schema first: seeding may come before the first gateway starts.
  await runMigrations({ databaseUrl, log })
  if (command === 'import') {
    const file = args[0]
    if (file === undefined || args.length !== 1) fail(`import takes one file\n${usage}`, 2)
    let definitions
    try {
      definitions = readTenantsFile(file)
      // The checks a start-up would make (durations, duplicates), before anything is written.
      buildTenantRegistry(definitions)
    } catch (error) {
      if (error instanceof TenantsFileError) fail(`${error.message.replace(/^TENANTS_FILE: /, '')}; nothing was imported`)
      throw error
    }
    try {
      const imported = await importTenants(pool, { actor: 'cli:import', requestId: null }, definitions, newKeyId)
      process.stdout.write(`imported ${imported.tenants} tenant(s) and ${imported.keys} key hash(es) from ${file}; every gateway serves them within a second\n`)
    } catch (error) {
      if (error instanceof TenantExistsError) fail(`${error.message}; nothing was imported (an import seeds a database once; change tenants with the admin API)`)
      throw error
    }
  } else {
    const outIndex = args.indexOf('--out')
    const out = outIndex === -1 ? null : args[outIndex + 1]
    if (out === undefined || args.length !== (outIndex === -1 ? 0 : 2)) fail(`export takes only --out <file>\n${usage}`, 2)
    const exported = await exportTenantsFile(pool, new Date())
    const text = JSON.stringify(exported.file, null, 2) + '\n'
    if (out === null) process.stdout.write(text)
    else writeFileSync(out, text)
    for (const { id, reason } of exported.leftOut) process.stderr.write(`left out: tenant "${id}" (${reason}: a tenants file cannot carry it)\n`)
    process.stderr.write(`exported ${exported.file.tenants.length} tenant(s)${out === null ? '' : ` to ${out}`}\n`)
  }
} catch (error) {
  fail(`${(error as Error).message}`)
} finally {
  await pool.end()
}
