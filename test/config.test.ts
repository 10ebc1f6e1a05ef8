import t from 'tap'
import { readFileSync } from 'node:fs'
import { ConfigError, describeConfig, gatewaySecrets, loadConfig, parseTrustProxy, resolveConfig } from '../src/config.ts'

t.test('defaults', async (t) => {
  const config = loadConfig({})
  t.match(config, {
    port: 8080,
    host: '127.0.0.1',
    evolinkApiKey: '',
    evolinkBaseUrl: 'https://api.evolink.ai',
    tenantsFile: '',
    redisUrl: '',
    upstreamTimeoutMs: 30000,
    logLevel: 'info',
    bodyLimitBytes: 65536,
    rateLimitOnStoreError: 'memory',
    idempotencyTtlMs: 86400000,
    upstreamRetryAttempts: 3,
    upstreamBreakerFailures: 5
  })
})

t.test('environment variables are read, converted and validated', async (t) => {
  const config = loadConfig({ PORT: '9000', UPSTREAM_TIMEOUT_MS: '1500', RATE_LIMIT_ON_STORE_ERROR: 'deny', REDIS_URL: 'redis://localhost:6379', LOG_LEVEL: 'warn', HOST: '' })
  t.match(config, { port: 9000, upstreamTimeoutMs: 1500, rateLimitOnStoreError: 'deny', redisUrl: 'redis://localhost:6379', logLevel: 'warn', host: '127.0.0.1' })
})

t.test('a bad value names the variable', async (t) => {
  t.throws(() => loadConfig({ PORT: '70000' }), new ConfigError('Invalid configuration: PORT must be <= 65535, got 70000'))
  t.throws(() => loadConfig({ PORT: 'eighty' }), /PORT must be integer, got "eighty"/)
  t.throws(() => loadConfig({ LOG_LEVEL: 'loud' }), /LOG_LEVEL must be equal to one of the allowed values \(fatal, error, warn, info, debug, trace, silent\)/)
  t.throws(() => loadConfig({ EVOLINK_BASE_URL: 'ftp://x' }), /EVOLINK_BASE_URL must match pattern/)
  t.throws(() => loadConfig({ REDIS_URL: 'localhost:6379' }), /REDIS_URL must match pattern/)
  t.throws(() => loadConfig({ RATE_LIMIT_ON_STORE_ERROR: 'maybe' }), /RATE_LIMIT_ON_STORE_ERROR must be equal to one of the allowed values \(memory, allow, deny\)/)
  t.throws(() => loadConfig({ UPSTREAM_TIMEOUT_MS: '10' }), /UPSTREAM_TIMEOUT_MS must be >= 100/)
  t.throws(() => resolveConfig({ upstreamTimeoutMs: 'fast' } as never), /UPSTREAM_TIMEOUT_MS/)
  t.throws(() => resolveConfig({ nonsense: 1 } as never), /unknown field "nonsense"/)
})

t.test('secrets are never echoed in config errors', async (t) => {
  t.throws(() => resolveConfig({ evolinkApiKey: 42 } as never), /EVOLINK_API_KEY must be string, got \[redacted\]/)
  let message = ''
  try { loadConfig({ METRICS_TOKEN: 'short-secret' }) } catch (error) { message = (error as Error).message }
  t.match(message, /^Invalid configuration: METRICS_TOKEN must match pattern .*, got \[redacted\]$/, 'a too short metrics token is refused')
  t.notMatch(message, /short-secret/)
})

t.test('metrics and concurrency settings', async (t) => {
  t.match(loadConfig({}), { metricsPort: 0, metricsToken: '', taskConcurrencyStaleMs: 3_600_000 }, 'metrics are not served by default')
  t.match(loadConfig({ METRICS_PORT: '9464', METRICS_TOKEN: 'a-long-enough-metrics-token', TASK_CONCURRENCY_STALE_MS: '600000' }), { metricsPort: 9464, metricsToken: 'a-long-enough-metrics-token', taskConcurrencyStaleMs: 600_000 })
  t.throws(() => loadConfig({ TASK_CONCURRENCY_STALE_MS: '1000' }), /TASK_CONCURRENCY_STALE_MS must be >= 60000/)
})

t.test('helpers', async (t) => {
  t.same(gatewaySecrets({ gatewaySecret: ' a , b,,' }), ['a', 'b'])
  t.equal(parseTrustProxy('false'), false)
  t.equal(parseTrustProxy('true'), true)
  t.same(parseTrustProxy('10.0.0.0/8, 127.0.0.1'), ['10.0.0.0/8', '127.0.0.1'])
  const hops = parseTrustProxy('2') as (address: string, hop: number) => boolean
  t.same([hops('x', 0), hops('x', 1), hops('x', 2)], [true, true, false])
})

t.test('.env.example and docs/configuration.md list every variable', async (t) => {
  const example = readFileSync(new URL('../.env.example', import.meta.url), 'utf8')
  const readme = readFileSync(new URL('../docs/configuration.md', import.meta.url), 'utf8')
  for (const { env } of describeConfig()) {
    t.match(example, new RegExp(`^#? ?${env}=`, 'm'), `${env} in .env.example`)
    t.match(readme, `\`${env}\``, `${env} in docs/configuration.md`)
  }
})
