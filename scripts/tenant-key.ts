import { existsSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { buildTenantRegistry, generateTenantKey, generateWebhookSecret, parseTenantsFile, readTenantsFile, tenantKeyHash, TenantsFileError } from '../src/features/tenants/registry.ts'
import type { TenantDefinition } from '../src/schemas/tenants.ts'

/**
 * `npm run tenant-key -- <tenant id> [--file tenants.json]`: a new random tenant
 * key, printed once (the gateway keeps only its hash).
 *
 * Without --file: prints the tenants-file entry to paste. With --file: writes the
 * whole file, created if missing: the tenant is added (with a webhook signing
 * secret), or, if it is there, the new key is added to its keys (a rotation: the
 * old keys keep working until they are removed). The file before and after is
 * checked as the gateway checks it (its schema, then its registry), so the gateway can load
 * what is written; a file that is not valid is left as it is. A running gateway
 * picks the change up by itself (it watches the file) or on SIGHUP.
 */
const usage = 'usage: npm run tenant-key -- <tenant id> [--file <tenants file>]   (id: letters, digits, _ . -; up to 64)\n'

let parsed
try {
  parsed = parseArgs({ allowPositionals: true, options: { file: { type: 'string' }, help: { type: 'boolean', short: 'h' } } })
} catch (error) {
  process.stderr.write(`${(error as Error).message}\n${usage}`)
  process.exit(2)
}
const { values, positionals } = parsed
const tenantId = positionals[0]
if (values.help === true || positionals.length !== 1 || tenantId === undefined || !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(tenantId)) {
  process.stderr.write(usage)
  process.exit(values.help === true ? 0 : 2)
}

const key = generateTenantKey()
const keyHash = tenantKeyHash(key)
const webhookSecret = generateWebhookSecret()
const newEntry: TenantDefinition = { id: tenantId, keys: [keyHash], rateLimit: { max: 60, timeWindow: '1 minute' }, webhookSecrets: [webhookSecret] }

const keyLines = [
  `Tenant key for "${tenantId}" (shown once; the gateway stores only its hash):`,
  '',
  `  ${key}`,
  ''
]
const secretLines = [
  'Webhook signing secret (give it to the tenant too: their receiver verifies callback_url deliveries with it; the gateway keeps it in the tenants file):',
  '',
  `  ${webhookSecret}`,
  ''
]

if (values.file === undefined) {
  process.stdout.write([
    ...keyLines,
    ...secretLines,
    'Add this to the "tenants" array of your TENANTS_FILE (or append the hash to an existing tenant\'s "keys" to rotate;',
    '`npm run tenant-key -- <tenant id> --file <tenants file>` does either for you):',
    '',
    `  ${JSON.stringify(newEntry)}`,
    ''
  ].join('\n'))
  process.exit(0)
}

const file = values.file
try {
  const existed = existsSync(file)
  const tenants = existed ? readTenantsFile(file) : []
  const existing = tenants.find((tenant) => tenant.id === tenantId)
  const next = existing === undefined
    ? [...tenants, newEntry]
    : tenants.map((tenant) => tenant === existing ? { ...tenant, keys: [...tenant.keys, keyHash] } : tenant)
  const text = JSON.stringify({ tenants: next }, null, 2) + '\n'
  // What is written is what the gateway will load: checked as the gateway checks it, first.
  buildTenantRegistry(parseTenantsFile(text, file))
  // A whole new file in one rename: a gateway watching it never reads half of one. It holds webhook
  // secrets: a new file is the owner's only; an existing one keeps its mode.
  const temp = `${file}.${process.pid}.tmp`
  try {
    writeFileSync(temp, text, { mode: existed ? statSync(file).mode & 0o777 : 0o600, flag: 'wx' })
    renameSync(temp, file)
  } catch (error) {
    rmSync(temp, { force: true })
    throw new TenantsFileError(`cannot write ${file} (${(error as NodeJS.ErrnoException).code ?? 'error'})`, { cause: error })
  }
  process.stdout.write([
    ...keyLines,
    ...(existing === undefined ? secretLines : []),
    existing === undefined
      ? `Tenant "${tenantId}" added to ${file}${existed ? '' : ' (created)'}.`
      : `Key added to tenant "${tenantId}" in ${file} (it has ${existing.keys.length + 1} keys now; remove an old hash from "keys" to retire it).`,
    'A running gateway reloads the file by itself (it watches it), or on SIGHUP.',
    ''
  ].join('\n'))
} catch (error) {
  if (!(error instanceof TenantsFileError)) throw error
  // The registry's own checks (a duplicate id...) name the field, not the file.
  const message = /^(TENANTS_FILE|cannot write)/.test(error.message) ? error.message : `TENANTS_FILE: ${file}: ${error.message}`
  process.stderr.write(`${message}\nNothing was written.\n`)
  process.exit(1)
}
