import t from 'tap'
import { execFile } from 'node:child_process'
import { chmodSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { buildTenantRegistry, readTenantsFile, tenantKeyHash } from '../../src/features/tenants/registry.ts'
import { makeTenant } from '../helpers/gateway.ts'

const scriptPath = fileURLToPath(new URL('../../scripts/tenant-key.ts', import.meta.url))
const repoRoot = fileURLToPath(new URL('../..', import.meta.url))

interface Run { code: number, stdout: string, stderr: string }

async function run (args: string[], options: { cwd: string, npm?: boolean }): Promise<Run> {
  const [command, argv] = options.npm === true ? ['npm', ['run', '--silent', '--prefix', repoRoot, 'tenant-key', '--', ...args]] : [process.execPath, [scriptPath, ...args]]
  return await new Promise((resolve) => {
    execFile(command as string, argv as string[], { cwd: options.cwd, env: { PATH: process.env.PATH ?? '' } }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : (error.code as number), stdout, stderr })
    })
  })
}

/** The plaintext key and webhook secret the script printed (the secret only for a new tenant). */
function printed (stdout: string): { key: string | undefined, secret: string | undefined } {
  return { key: /^ {2}(vgk_\S+)$/m.exec(stdout)?.[1], secret: /^ {2}(whsec_\S+)$/m.exec(stdout)?.[1] }
}

t.test('--file that does not exist: a whole valid tenants file is created (owner-only), the key printed once authenticates the tenant', async (t) => {
  const dir = t.testdir({})
  const file = join(dir, 'tenants.json')
  const result = await run(['acme', '--file', 'tenants.json'], { cwd: dir })
  t.equal(result.code, 0, result.stderr)
  const { key, secret } = printed(result.stdout)
  t.match(key, /^vgk_[A-Za-z0-9_-]{43}$/)
  t.equal(result.stdout.split(key!).length - 1, 1, 'the key is printed once')
  t.match(result.stdout, 'Tenant "acme" added to tenants.json (created).')
  const tenants = readTenantsFile(file)
  t.same(tenants, [{ id: 'acme', keys: [tenantKeyHash(key!)], rateLimit: { max: 60, timeWindow: '1 minute' }, webhookSecrets: [secret] }])
  t.equal(buildTenantRegistry(tenants).byKeyHash.get(tenantKeyHash(key!))?.id, 'acme', 'the gateway\'s registry authenticates the printed key')
  t.notMatch(readFileSync(file, 'utf8'), key!, 'only the hash is stored')
  t.equal(statSync(file).mode & 0o777, 0o600, 'it holds webhook secrets: owner-only')
})

t.test('--file with the tenant in it: a new key is added (a rotation), everything else kept as it was', async (t) => {
  const acme = makeTenant('acme', { allowedModels: ['veo-3.1-fast-generate-preview'], maxN: 2 })
  const other = makeTenant('other', { rateLimit: { max: 5, timeWindow: 1000 } })
  const dir = t.testdir({ 'tenants.json': JSON.stringify({ tenants: [acme.definition, other.definition] }) })
  const file = join(dir, 'tenants.json')
  chmodSync(file, 0o640)
  const result = await run([acme.id, '--file', 'tenants.json'], { cwd: dir })
  t.equal(result.code, 0, result.stderr)
  const { key, secret } = printed(result.stdout)
  t.equal(secret, undefined, 'no new webhook secret for a tenant that has its own')
  t.match(result.stdout, `Key added to tenant "${acme.id}" in tenants.json (it has 2 keys now; remove an old hash from "keys" to retire it).`)
  const tenants = readTenantsFile(file)
  t.same(tenants, [{ ...acme.definition, keys: [...acme.definition.keys, tenantKeyHash(key!)] }, other.definition])
  const registry = buildTenantRegistry(tenants)
  t.equal(registry.byKeyHash.get(tenantKeyHash(key!))?.id, acme.id, 'the new key')
  t.equal(registry.byKeyHash.get(tenantKeyHash(acme.key))?.id, acme.id, 'the old key still works until it is removed')
  t.equal(statSync(file).mode & 0o777, 0o640, 'the file keeps its mode')
})

t.test('--file with other tenants: the new tenant is appended, through `npm run tenant-key`', async (t) => {
  const other = makeTenant('other')
  const dir = t.testdir({ 'tenants.json': JSON.stringify({ tenants: [other.definition] }) })
  // npm runs scripts in the package's directory: the file is named absolutely.
  const result = await run(['beta', '--file', join(dir, 'tenants.json')], { cwd: dir, npm: true })
  t.equal(result.code, 0, result.stderr)
  const { key, secret } = printed(result.stdout)
  t.match(secret, /^whsec_/)
  t.same(readTenantsFile(join(dir, 'tenants.json')), [other.definition, { id: 'beta', keys: [tenantKeyHash(key!)], rateLimit: { max: 60, timeWindow: '1 minute' }, webhookSecrets: [secret] }])
})

/** Node's own words for the JSON error (they vary across versions) */
function syntaxError (text: string): string {
  try {
    JSON.parse(text)
  } catch (error) {
    return (error as Error).message
  }
  throw new Error('valid JSON')
}

const first = makeTenant('acme')
const second = makeTenant('acme')
for (const { name, text, message } of [
  { name: 'not JSON', text: '{"tenants": [', message: `TENANTS_FILE: tenants.json is not valid JSON (${syntaxError('{"tenants": [')})` },
  { name: 'refused by the schema', text: JSON.stringify({ tenants: [{ id: 'acme', keys: ['plaintext'] }] }), message: 'TENANTS_FILE: tenants.json: tenants[0].keys[0] must match pattern "^sha256:[0-9a-f]{64}$"' },
  { name: 'refused by the registry', text: JSON.stringify({ tenants: [first.definition, { ...second.definition, id: first.id }] }), message: `TENANTS_FILE: tenants.json: tenants[1].id: duplicate tenant id "${first.id}"` }
]) {
  t.test(`--file that is ${name}: one line naming the file and the problem, exit 1, the file untouched`, async (t) => {
    const dir = t.testdir({ 'tenants.json': text })
    const result = await run(['acme', '--file', 'tenants.json'], { cwd: dir })
    t.same(result, { code: 1, stdout: '', stderr: `${message}\nNothing was written.\n` })
    t.equal(readFileSync(join(dir, 'tenants.json'), 'utf8'), text)
  })
}

t.test('a bad tenant id or an unknown option: the usage, exit 2, nothing written', async (t) => {
  const dir = t.testdir({})
  const usage = 'usage: npm run tenant-key -- <tenant id> [--file <tenants file>]   (id: letters, digits, _ . -; up to 64)\n'
  t.same(await run(['not an id', '--file', 'tenants.json'], { cwd: dir }), { code: 2, stdout: '', stderr: usage })
  t.same(await run([], { cwd: dir }), { code: 2, stdout: '', stderr: usage })
  const unknown = await run(['acme', '--fil', 'tenants.json'], { cwd: dir })
  t.equal(unknown.code, 2)
  t.match(unknown.stderr, /^Unknown option '--fil'/)
  t.notOk(existsSync(join(dir, 'tenants.json')))
})

t.test('without --file: the entry to paste, valid for the gateway, and nothing written', async (t) => {
  const dir = t.testdir({})
  const result = await run(['acme'], { cwd: dir })
  t.equal(result.code, 0, result.stderr)
  const { key, secret } = printed(result.stdout)
  const entry = JSON.parse(/^ {2}(\{.*\})$/m.exec(result.stdout)?.[1] ?? 'null')
  t.same(entry, { id: 'acme', keys: [tenantKeyHash(key!)], rateLimit: { max: 60, timeWindow: '1 minute' }, webhookSecrets: [secret] })
  writeFileSync(join(dir, 'pasted.json'), JSON.stringify({ tenants: [entry] }))
  t.equal(buildTenantRegistry(readTenantsFile(join(dir, 'pasted.json'))).byKeyHash.get(tenantKeyHash(key!))?.id, 'acme')
})
