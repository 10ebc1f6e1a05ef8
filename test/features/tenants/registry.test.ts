import t from 'tap'
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { buildTenantRegistry, generateTenantKey, generateWebhookSecret, readTenantsFile, tenantKeyHash } from '../../../src/features/tenants/registry.ts'

const hash = tenantKeyHash('key-one')

t.test('keys are stored and looked up only as sha256 hashes', async (t) => {
  t.match(hash, /^sha256:[0-9a-f]{64}$/)
  // echo -n key-one | sha256sum
  t.equal(hash, 'sha256:' + createHash('sha256').update('key-one').digest('hex'))
  const registry = buildTenantRegistry([{ id: 'acme', keys: [hash] }])
  t.equal(registry.byKeyHash.get(hash)?.id, 'acme')
  t.notOk(JSON.stringify(registry).includes('key-one'))
  t.match(generateTenantKey(), /^vgk_[A-Za-z0-9_-]{43}$/)
  t.not(generateTenantKey(), generateTenantKey())
})

t.test('limits: defaults, milliseconds and text windows', async (t) => {
  const registry = buildTenantRegistry([
    { id: 'a', keys: [hash] },
    { id: 'b', keys: [tenantKeyHash('b')], rateLimit: { max: 10, timeWindow: '1 minute' }, readRateLimit: { max: 100, timeWindow: 5000 } }
  ])
  t.same(registry.tenants[0]?.rateLimit, { max: 60, timeWindowMs: 60_000 })
  t.same(registry.tenants[0]?.readRateLimit, { max: 600, timeWindowMs: 60_000 })
  t.same(registry.tenants[1]?.rateLimit, { max: 10, timeWindowMs: 60_000 })
  t.same(registry.tenants[1]?.readRateLimit, { max: 100, timeWindowMs: 5000 })
})

t.test('a bad tenants definition names what is wrong', async (t) => {
  t.throws(() => buildTenantRegistry([{ id: 'a', keys: [hash] }, { id: 'a', keys: [tenantKeyHash('x')] }]), /tenants\[1\]\.id: duplicate tenant id "a"/)
  t.throws(() => buildTenantRegistry([{ id: 'a', keys: [hash] }, { id: 'b', keys: [hash] }]), /tenants\[1\]\.keys: a key hash is listed twice/)
  t.throws(() => buildTenantRegistry([{ id: 'a', keys: ['plaintext-key'] }]), /tenants\[0\]\.keys\[0\] must match pattern/)
  t.throws(() => buildTenantRegistry([{ id: 'a', keys: [hash], rateLimit: { max: 1, timeWindow: 'soonish' } }]), /tenants\[0\]\.rateLimit\.timeWindow: cannot read "soonish"/)
  t.throws(() => buildTenantRegistry([{ id: 'a', keys: [hash], maxTasks: 5 } as never]), /tenants\[0\] has an unknown field "maxTasks"/)
  t.throws(() => buildTenantRegistry([{ id: 'a', keys: [hash], budget: { creditsPerWeek: 5 } } as never]), /tenants\[0\]\.budget has an unknown field "creditsPerWeek"/)
  t.throws(() => buildTenantRegistry([{ id: 'a', keys: [hash], allowedQualities: ['8k'] } as never]), /tenants\[0\]\.allowedQualities\[0\]/)
  t.throws(() => buildTenantRegistry([{ id: 'a', keys: [hash], maxConcurrentTasks: 0 }]), /tenants\[0\]\.maxConcurrentTasks/)
})

t.test('limits beyond the request rate are resolved; absent means none', async (t) => {
  const { tenants } = buildTenantRegistry([
    { id: 'held', keys: [hash], maxConcurrentTasks: 3, budget: { creditsPerDay: 100.5, videoSecondsPerMonth: 600 }, maxN: 1, maxDuration: 6, allowedQualities: ['720p'] },
    { id: 'free', keys: [tenantKeyHash('free')], budget: {} }
  ])
  t.match(tenants[0], { maxConcurrentTasks: 3, budget: { creditsPerDay: 100.5, videoSecondsPerMonth: 600 }, maxN: 1, maxDuration: 6, allowedQualities: new Set(['720p']) })
  const { maxConcurrentTasks, budget, maxN, maxDuration, allowedQualities } = tenants[1] ?? {}
  t.strictSame({ maxConcurrentTasks, budget, maxN, maxDuration, allowedQualities }, { maxConcurrentTasks: null, budget: null, maxN: null, maxDuration: null, allowedQualities: null }, 'an empty budget is no budget')
})

t.test('webhook secrets: whsec_ and base64 of 24+ bytes; absent means none', async (t) => {
  const secret = generateWebhookSecret()
  t.match(secret, /^whsec_[A-Za-z0-9+/]{43}=$/)
  t.same(buildTenantRegistry([{ id: 'a', keys: [hash], webhookSecrets: [secret] }]).tenants[0]!.webhookSecrets, [secret])
  t.same(buildTenantRegistry([{ id: 'a', keys: [hash] }]).tenants[0]!.webhookSecrets, [])
  t.throws(() => buildTenantRegistry([{ id: 'a', keys: [hash], webhookSecrets: ['not-a-secret'] }]), /tenants\[0\]\.webhookSecrets\[0\] must match pattern/)
  t.throws(() => buildTenantRegistry([{ id: 'a', keys: [hash], webhookSecrets: ['whsec_c2hvcnQ='] }]), /tenants\[0\]\.webhookSecrets\[0\] must match pattern/, 'too short')
  t.throws(() => buildTenantRegistry([{ id: 'a', keys: [hash], webhookSecrets: [] }]), /tenants\[0\]\.webhookSecrets/)
})

t.test('TENANTS_FILE errors name the variable and the file', async (t) => {
  const dir = t.testdir({ 'good.json': JSON.stringify({ tenants: [{ id: 'acme', keys: [hash] }] }), 'bad.json': '{nope', 'wrong.json': '{"tenants":[{"id":"acme"}]}' })
  t.same(readTenantsFile(join(dir, 'good.json')), [{ id: 'acme', keys: [hash] }])
  t.throws(() => readTenantsFile(join(dir, 'missing.json')), /TENANTS_FILE: cannot read .*missing\.json \(ENOENT\)/)
  t.throws(() => readTenantsFile(join(dir, 'bad.json')), /TENANTS_FILE: .*bad\.json is not valid JSON/)
  t.throws(() => readTenantsFile(join(dir, 'wrong.json')), /TENANTS_FILE: .*wrong\.json: tenants\[0\] must have required properties keys/)
})
