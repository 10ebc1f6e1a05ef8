import { generateTenantKey, generateWebhookSecret, tenantKeyHash } from '../src/features/tenants/registry.ts'

/**
 * `npm run tenant-key -- <tenant id>`: prints a new random tenant key (give it
 * to the tenant, once) and the tenants-file entry with its hash (the only
 * form the gateway keeps). Nothing is written anywhere.
 */
const tenantId = process.argv[2]
if (tenantId === undefined || !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(tenantId)) {
  process.stderr.write('usage: npm run tenant-key -- <tenant id>   (letters, digits, _ . -; up to 64)\n')
  process.exit(2)
}
const key = generateTenantKey()
const webhookSecret = generateWebhookSecret()
const entry = { id: tenantId, keys: [tenantKeyHash(key)], rateLimit: { max: 60, timeWindow: '1 minute' }, webhookSecrets: [webhookSecret] }
process.stdout.write([
  `Tenant key for "${tenantId}" (shown once; the gateway stores only its hash):`,
  '',
  `  ${key}`,
  '',
  'Webhook signing secret (give it to the tenant too: their receiver verifies callback_url deliveries with it; the gateway keeps it in the entry below):',
  '',
  `  ${webhookSecret}`,
  '',
  'Add this to the "tenants" array of your TENANTS_FILE (or append the hash to an existing tenant\'s "keys" to rotate):',
  '',
  `  ${JSON.stringify(entry)}`,
  ''
].join('\n'))
