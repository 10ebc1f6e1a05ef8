import { test } from 'tap'
import { createServer } from 'node:net'
import { ConfigError, resolveConfig } from '../../src/config.ts'
import { featureOptions, openArchiveStorage } from '../../src/config/feature-options.ts'
import { buildApp } from '../../src/app.ts'

const secrets = ['s'.repeat(32)]

test('a value parsed beyond its schema fails as a ConfigError that names its variable', async (t) => {
  const cases = [
    { config: { webhookAllowedDestinations: '10.0.0.0/8,nonsense/8' }, message: 'WEBHOOK_ALLOWED_DESTINATIONS: "nonsense/8" is not a CIDR' },
    { config: { archiveAllowedSources: '300.1.1.1/8' }, message: 'ARCHIVE_ALLOWED_SOURCES: "300.1.1.1/8" is not a CIDR' },
    { config: { openaiModelAliases: 'sora-2=no-such-model' }, message: /^OPENAI_MODEL_ALIASES maps "sora-2" to "no-such-model", which is not a served model/ }
  ]
  for (const { config, message } of cases) {
    t.throws(() => featureOptions(resolveConfig(config), {}, secrets), { name: 'ConfigError', message }, message.toString())
  }
})

test('buildApp checks every feature option before the first plugin starts: a bad value fails before Redis is dialled', async (t) => {
  // A port that accepts and counts connections: the failed boot must not have opened one.
  let connections = 0
  const listener = createServer((socket) => { connections++; socket.destroy() })
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => listener.close(() => resolve())))
  const { port } = listener.address() as { port: number }
  await t.rejects(buildApp({
    logger: false,
    tenants: [],
    config: { evolinkApiKey: 'k', gatewaySecret: secrets[0], redisUrl: `redis://127.0.0.1:${port}`, webhookAllowedDestinations: 'nonsense/8' }
  }), new ConfigError('WEBHOOK_ALLOWED_DESTINATIONS: "nonsense/8" is not a CIDR'))
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.equal(connections, 0, 'no connection to Redis was opened')
})

test('the config sets each feature in the feature\'s own words', async (t) => {
  const config = resolveConfig({ upstreamTimeoutMs: 20_000, evolinkFilesUrl: 'off', unauthenticatedRateLimitMax: 7, unauthenticatedRateLimitWindowMs: 1000 })
  const clock = (): number => 0
  const options = featureOptions(config, { clock }, secrets)
  // A key's lock outlives any request (one upstream call plus one retried refused connect).
  t.equal(options.idempotency.lockTtlMs, 50_000)
  t.equal(options.upstreamFiles.baseUrl, null, 'EVOLINK_FILES_URL=off: no files API')
  t.same(options.tenantAuth.unauthenticatedRateLimit, { max: 7, timeWindowMs: 1000 })
  t.same(options.errors.notFoundRateLimit, { max: 7, timeWindowMs: 1000 }, 'one unauthenticated limit for 404s, auth failures, admin and demo tokens')
  t.equal(options.demoTokenRateLimit, options.admin.unauthenticatedRateLimit)
  t.equal(options.taskStatus.now, clock, 'the seams\' clock reaches every feature that keeps time')
  t.equal(options.webhooks.now, clock)
  t.equal(options.archive(null).storage, null)
  t.equal(options.taskIndex.retentionMs, 30 * 24 * 60 * 60 * 1000, 'the task index keeps 30 days')
  t.match(options.redisStore.outagePolicy, /^rate limits count per instance, requests with an Idempotency-Key/)
  t.equal(featureOptions(resolveConfig({ rateLimitOnStoreError: 'deny' }), {}, secrets).redisStore.outagePolicy.split(',')[0], 'rate-limited requests get 503')
})

test('no archive storage without a directory or a bucket', async (t) => {
  t.equal(await openArchiveStorage(resolveConfig({})), null)
})
