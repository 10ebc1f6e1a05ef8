import { Type, type Static, type TSchema } from 'typebox'
import { Value } from 'typebox/value'
import { firstSchemaProblem } from './errors/schema-errors.ts'

/**
 * The gateway's whole configuration: one TypeBox schema. Each property names
 * the environment variable it is read from (`env`), so that parsing, defaults,
 * validation, `.env.example` and the README's config reference all come from
 * here. `buildApp({ config })` takes the same shape, so tests need no env.
 */
export const ConfigSchema = Type.Object({
  port: Type.Integer({ env: 'PORT', default: 8080, minimum: 0, maximum: 65535, description: 'TCP port the gateway listens on.' }),
  host: Type.String({ env: 'HOST', default: '127.0.0.1', minLength: 1, description: 'Address to bind; use 0.0.0.0 in a container.' }),
  evolinkApiKey: Type.String({ env: 'EVOLINK_API_KEY', default: '', description: 'The upstream (Evolink) key. Empty: the gateway runs against its built-in simulator and makes no real videos.' }),
  evolinkBaseUrl: Type.String({ env: 'EVOLINK_BASE_URL', default: 'https://api.evolink.ai', pattern: '^https?://[^\\s/]+(/.*)?$', description: 'Upstream origin.' }),
  tenantsFile: Type.String({ env: 'TENANTS_FILE', default: '', description: 'Path of the tenants JSON file (required with a real upstream key).' }),
  gatewaySecret: Type.String({ env: 'GATEWAY_SECRET', default: '', description: 'Secret (32+ chars) that signs tenant-scoped task ids; required with a real upstream key. Several, comma-separated: the first signs, all verify (rotation).' }),
  databaseUrl: Type.String({ env: 'DATABASE_URL', default: '', pattern: '^(postgres(ql)?://.+)?$', description: 'PostgreSQL (database mode): tenants, their keys and the admin audit log live there, changed through the admin API without a restart; migrations run at start. Empty: file mode (TENANTS_FILE).' }),
  databaseRefreshMs: Type.Integer({ env: 'DATABASE_REFRESH_MS', default: 60000, minimum: 1000, maximum: 3600000, description: 'Database mode: every instance reloads all tenants and keys this often, a safety net behind the LISTEN/NOTIFY pushes that apply each change at once.' }),
  adminTokens: Type.String({ env: 'ADMIN_TOKENS', default: '', pattern: '^(sha256:[0-9a-f]{64}(,sha256:[0-9a-f]{64})*)?$', description: 'Hashes (`sha256:<hex>`, comma-separated) of the tokens that may use the admin API at `/admin/v1` (`npm run tenants -- admin-token` makes a token and its hash). Empty: the admin API refuses every request.' }),
  adminPort: Type.Integer({ env: 'ADMIN_PORT', default: 0, minimum: 0, maximum: 65535, description: 'Serve the admin API on this separate port (same HOST) and not on the main one. 0: on the main port.' }),
  redisUrl: Type.String({ env: 'REDIS_URL', default: '', pattern: '^(rediss?://.+)?$', description: 'Redis for state shared by all instances (rate-limit counters, Idempotency-Key records, task statuses, usage, budget and concurrency counters). Empty: in memory, per instance.' }),
  redisKeyPrefix: Type.String({ env: 'REDIS_KEY_PREFIX', default: 'vg:', pattern: '^[A-Za-z0-9:_.-]{1,64}$', description: 'The start of every Redis key, so that several gateways (or test runs) can share one Redis. Letters, digits and `:_.-`.' }),
  upstreamTimeoutMs: Type.Integer({ env: 'UPSTREAM_TIMEOUT_MS', default: 30000, minimum: 100, maximum: 600000, description: 'Deadline for one upstream call, headers and body; past it the caller gets 504 upstream_timeout.' }),
  upstreamConnections: Type.Integer({ env: 'UPSTREAM_CONNECTIONS', default: 128, minimum: 1, maximum: 4096, description: 'Keep-alive connections in the upstream pool.' }),
  upstreamMaxResponseBytes: Type.Integer({ env: 'UPSTREAM_MAX_RESPONSE_BYTES', default: 1048576, minimum: 1024, maximum: 67108864, description: 'Largest upstream body the gateway reads; more is bad_upstream_response.' }),
  bodyLimitBytes: Type.Integer({ env: 'BODY_LIMIT_BYTES', default: 65536, minimum: 1024, maximum: 10485760, description: 'Largest request body accepted; more is 413.' }),
  logLevel: Type.Enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], { env: 'LOG_LEVEL', default: 'info', description: 'pino log level.' }),
  logBufferBytes: Type.Integer({ env: 'LOG_BUFFER_BYTES', default: 1048576, minimum: 1024, maximum: 268435456, description: 'Log lines waiting for stdout, at most (about this many bytes). Logging is lossy: past it (a reader that is slow or stopped reading), or once stdout is closed, lines are dropped and counted in `vg_log_lines_dropped_total`, and serving and shutting down go on.' }),
  trustProxy: Type.String({ env: 'TRUST_PROXY', default: 'false', description: 'Fastify trustProxy: false (default: client IP is the socket peer), true, a hop count, or comma-separated addresses/CIDRs of your proxies. Matters for per-IP limits.' }),
  unauthenticatedRateLimitMax: Type.Integer({ env: 'UNAUTHENTICATED_RATE_LIMIT_MAX', default: 30, minimum: 1, description: 'Requests per window one client IP may make without a valid key (slows key guessing).' }),
  unauthenticatedRateLimitWindowMs: Type.Integer({ env: 'UNAUTHENTICATED_RATE_LIMIT_WINDOW_MS', default: 60000, minimum: 1000, description: 'Window of the per-IP limit, ms.' }),
  rateLimitOnStoreError: Type.Enum(['memory', 'allow', 'deny'], { env: 'RATE_LIMIT_ON_STORE_ERROR', default: 'memory', description: 'If Redis fails mid-traffic, rate limits: memory counts in this instance until Redis is back (each instance then enforces the whole limit), allow lets requests through uncounted, deny answers 503 store_unavailable.' }),
  idempotencyTtlMs: Type.Integer({ env: 'IDEMPOTENCY_TTL_MS', default: 86400000, minimum: 60000, maximum: 604800000, description: 'How long an Idempotency-Key is remembered (its answer replayed) after the request that used it.' }),
  idempotencyMemoryMaxKeys: Type.Integer({ env: 'IDEMPOTENCY_MEMORY_MAX_KEYS', default: 10000, minimum: 100, maximum: 1000000, description: 'Without REDIS_URL: most Idempotency-Keys kept in memory; past it the oldest are forgotten first.' }),
  upstreamRetryAttempts: Type.Integer({ env: 'UPSTREAM_RETRY_ATTEMPTS', default: 3, minimum: 1, maximum: 10, description: 'Most attempts of one task read (GET) on a reset or a 502/503/504, the first included, all within UPSTREAM_TIMEOUT_MS; 1 disables retries. A create (POST) is retried only after a refused connection, once.' }),
  upstreamRetryBaseDelayMs: Type.Integer({ env: 'UPSTREAM_RETRY_BASE_DELAY_MS', default: 100, minimum: 1, maximum: 10000, description: 'First backoff step of upstream retries; it doubles per attempt (full jitter).' }),
  upstreamRetryMaxDelayMs: Type.Integer({ env: 'UPSTREAM_RETRY_MAX_DELAY_MS', default: 2000, minimum: 1, maximum: 60000, description: 'Longest wait before one retry, backoff or upstream Retry-After; a longer Retry-After is not waited for.' }),
  upstreamBreakerFailures: Type.Integer({ env: 'UPSTREAM_BREAKER_FAILURES', default: 5, minimum: 0, maximum: 1000, description: 'Consecutive upstream failures (transport errors, timeouts, 5xx; not 4xx) that open the circuit breaker; 0 disables it.' }),
  upstreamBreakerOpenMs: Type.Integer({ env: 'UPSTREAM_BREAKER_OPEN_MS', default: 10000, minimum: 100, maximum: 600000, description: 'How long the open breaker answers 503 without calling the upstream before one probe call is let through.' }),
  taskStatusTtlMs: Type.Integer({ env: 'TASK_STATUS_TTL_MS', default: 1000, minimum: 50, maximum: 60000, description: 'How long a pending or processing task status is reused before the upstream is asked again (concurrent reads of one task share one upstream call); also how often a watched task (`?wait=`, `/events`) is polled.' }),
  taskTerminalTtlMs: Type.Integer({ env: 'TASK_TERMINAL_TTL_MS', default: 86400000, minimum: 1000, maximum: 604800000, description: 'How long a completed or failed task is kept and served without asking the upstream (its result links live 24 h).' }),
  taskCacheMaxEntries: Type.Integer({ env: 'TASK_CACHE_MAX_ENTRIES', default: 10000, minimum: 1, maximum: 10000000, description: 'Tasks kept in the in-memory status cache (without REDIS_URL); the least recently used go first.' }),
  taskEventsHeartbeatMs: Type.Integer({ env: 'TASK_EVENTS_HEARTBEAT_MS', default: 15000, minimum: 100, maximum: 300000, description: 'A comment line on an idle `/events` stream this often, so that proxies do not cut it.' }),
  taskEventsMaxMs: Type.Integer({ env: 'TASK_EVENTS_MAX_MS', default: 1800000, minimum: 1000, maximum: 86400000, description: 'An `/events` stream closes after this long even if the task is still running (EventSource reconnects).' }),
  demoPage: Type.Enum(['auto', 'on', 'off'], { env: 'DEMO_PAGE', default: 'auto', description: 'The demo page at /demo: auto serves it in simulator mode only (with a token endpoint for the demo tenant), on serves it always (with a real upstream, paste a token your backend minted), off never.' }),
  usageFlushMs: Type.Integer({ env: 'USAGE_FLUSH_MS', default: 1000, minimum: 0, maximum: 60000, description: 'With Redis: request counts gather in memory this long, then go to Redis in one write (the one write every request makes). Another instance\'s `/v1/usage` may lag by this much; an instance that dies without closing loses at most this much of its counts. 0: written at the end of each event-loop turn.' }),
  ledgerFlushMs: Type.Integer({ env: 'LEDGER_FLUSH_MS', default: 1000, minimum: 50, maximum: 60000, description: 'Database mode: the usage ledger\'s waiting entries (the Redis stream, or this process\'s memory without Redis) are written to PostgreSQL this often, in batches. Without Redis a crash loses at most this much of the ledger (docs/operations.md, "Usage ledger").' }),
  ledgerClaimIdleMs: Type.Integer({ env: 'LEDGER_CLAIM_IDLE_MS', default: 30000, minimum: 1000, maximum: 3600000, description: 'Database mode with Redis: ledger entries a gateway read from the stream and has not written this long (it was killed) are taken over by another, or by itself after a restart.' }),
  taskConcurrencyStaleMs: Type.Integer({ env: 'TASK_CONCURRENCY_STALE_MS', default: 3600000, minimum: 60000, maximum: 604800000, description: 'A task counts against its tenant\'s `maxConcurrentTasks` until the gateway sees it finished, or at most this long after its create (so that a client that never reads its tasks cannot lock itself out for good).' }),
  metricsPort: Type.Integer({ env: 'METRICS_PORT', default: 0, minimum: 0, maximum: 65535, description: 'Serve Prometheus metrics at `/metrics` on this separate port (same HOST), without a token. 0: no separate listener.' }),
  metricsToken: Type.String({ env: 'METRICS_TOKEN', default: '', pattern: '^(\\S{16,})?$', description: 'Serve `/metrics` on the main port too, to `Authorization: Bearer <this token>` (16+ characters). Empty: not on the main port. With neither this nor METRICS_PORT, metrics are collected but not served.' }),
  otelExporterOtlpEndpoint: Type.String({ env: 'OTEL_EXPORTER_OTLP_ENDPOINT', default: '', pattern: '^(https?://\\S+)?$', description: 'OpenTelemetry tracing, off while this and OTEL_EXPORTER_OTLP_TRACES_ENDPOINT are empty: the OTLP/HTTP collector\'s base URL (e.g. http://otel-collector:4318); spans are posted to `<this>/v1/traces` as JSON. A span per request (child of the caller\'s W3C `traceparent`) and per upstream attempt (its `traceparent` sent upstream); trace ids in the access log. The exporter also reads OTEL_EXPORTER_OTLP_HEADERS.' }),
  otelExporterOtlpTracesEndpoint: Type.String({ env: 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', default: '', pattern: '^(https?://\\S+)?$', description: 'The full OTLP/HTTP traces URL (e.g. http://otel-collector:4318/v1/traces), used as is; wins over OTEL_EXPORTER_OTLP_ENDPOINT.' }),
  otelServiceName: Type.String({ env: 'OTEL_SERVICE_NAME', default: 'video-gateway', minLength: 1, description: 'The `service.name` of the exported spans.' }),
  serverHeadersTimeoutMs: Type.Integer({ env: 'SERVER_HEADERS_TIMEOUT_MS', default: 10000, minimum: 100, description: 'A client must send its complete request headers within this time (slowloris bound).' }),
  serverRequestTimeoutMs: Type.Integer({ env: 'SERVER_REQUEST_TIMEOUT_MS', default: 30000, minimum: 100, description: 'A client must send its complete request, body included, within this time (dribbled bodies).' }),
  serverKeepAliveTimeoutMs: Type.Integer({ env: 'SERVER_KEEP_ALIVE_TIMEOUT_MS', default: 72000, minimum: 100, description: 'Idle keep-alive connections close after this; longer than the usual 60 s of load balancers in front, so they close first.' }),
  serverMaxConnections: Type.Integer({ env: 'SERVER_MAX_CONNECTIONS', default: 10000, minimum: 1, description: 'Open connections accepted at once; more are refused at the socket (connection floods).' }),
  shutdownDrainMs: Type.Integer({ env: 'SHUTDOWN_DRAIN_MS', default: 5000, minimum: 0, description: 'On SIGTERM/SIGINT, how long the gateway keeps serving (every answer with `Connection: close`, `/readyz` 503) so that load balancers stop sending to it, before it stops accepting connections.' }),
  shutdownGraceMs: Type.Integer({ env: 'SHUTDOWN_GRACE_MS', default: 10000, minimum: 0, description: 'On SIGTERM/SIGINT, after the drain, how long in-flight requests may take to finish.' }),
  shutdownJobGraceMs: Type.Integer({ env: 'SHUTDOWN_JOB_GRACE_MS', default: 3000, minimum: 0, maximum: 60000, description: 'On close, how long a webhook attempt or archive download under way may take to finish (each queue; within SHUTDOWN_GRACE_MS); past it the job is stopped and handed back to the shared queue, due at once, so that another instance takes it over rather than after its lease.' }),
  publicBaseUrl: Type.String({ env: 'PUBLIC_BASE_URL', default: '', pattern: '^(https?://[^\\s/?#]+(/[^\\s?#]*)?)?$', description: 'The gateway\'s own origin as the upstream reaches it (e.g. https://gateway.example.com): the upstream calls back `<PUBLIC_BASE_URL>/callbacks/evolink/<token>`. Empty: a create with `callback_url` gets 400 (simulator mode sets it to the gateway\'s loopback address).' }),
  webhookAllowedDestinations: Type.String({ env: 'WEBHOOK_ALLOWED_DESTINATIONS', default: '', description: 'Comma-separated hostnames and CIDRs (e.g. `hooks.internal,10.1.0.0/16,127.0.0.1/32`) that a tenant `callback_url` may reach although they are private, loopback or link-local; plain http is accepted only to these. Empty: public https destinations only.' }),
  webhookMaxAttempts: Type.Integer({ env: 'WEBHOOK_MAX_ATTEMPTS', default: 8, minimum: 1, maximum: 20, description: 'Delivery attempts of one webhook before it is marked failed, on the Standard Webhooks schedule: at once, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h, … (8 attempts span about 28 h).' }),
  webhookTimeoutMs: Type.Integer({ env: 'WEBHOOK_TIMEOUT_MS', default: 15000, minimum: 100, maximum: 60000, description: 'Deadline of one webhook delivery attempt (connect, headers and body); past it the attempt failed.' }),
  webhookRegistrationTtlMs: Type.Integer({ env: 'WEBHOOK_REGISTRATION_TTL_MS', default: 604800000, minimum: 60000, maximum: 2592000000, description: 'How long the gateway waits for the upstream callback of a task created with `callback_url` (and keeps its delivery history).' }),
  webhookPollIntervalMs: Type.Integer({ env: 'WEBHOOK_POLL_INTERVAL_MS', default: 1000, minimum: 10, maximum: 3600000, description: 'How often each instance looks for webhook retries that came due (a new delivery is sent at once).' }),
  archiveDir: Type.String({ env: 'ARCHIVE_DIR', default: '', description: 'Archive finished videos into this directory (created if missing; temp files inside it, so renames are atomic). Empty, and no ARCHIVE_S3_BUCKET: no archive (simulator mode uses `<tmpdir>/video-gateway-archive`: simulated tasks die with the process).' }),
  archiveS3Bucket: Type.String({ env: 'ARCHIVE_S3_BUCKET', default: '', description: 'Archive finished videos into this S3-compatible bucket (AWS S3, MinIO, R2, Ceph…) instead of ARCHIVE_DIR; credentials come from the AWS SDK\'s usual chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, an instance role).' }),
  archiveS3Endpoint: Type.String({ env: 'ARCHIVE_S3_ENDPOINT', default: '', pattern: '^(https?://.+)?$', description: 'The S3 endpoint for a non-AWS service (e.g. http://minio:9000, https://<account>.r2.cloudflarestorage.com). Empty: AWS.' }),
  archiveS3Region: Type.String({ env: 'ARCHIVE_S3_REGION', default: 'us-east-1', minLength: 1, description: 'The bucket\'s region (R2: `auto`).' }),
  archiveS3ForcePathStyle: Type.Boolean({ env: 'ARCHIVE_S3_FORCE_PATH_STYLE', default: false, description: 'Path-style bucket URLs (`<endpoint>/<bucket>/<key>`), as MinIO and most self-hosted services need.' }),
  archiveS3Prefix: Type.String({ env: 'ARCHIVE_S3_PREFIX', default: '', pattern: '^([A-Za-z0-9!_.*\'()/-]*)$', description: 'Start of every object key in the bucket (e.g. `video-gateway/`), so that one bucket can serve several uses.' }),
  archiveEnabled: Type.Boolean({ env: 'ARCHIVE_ENABLED', default: true, description: 'With an archive configured: archive every tenant\'s videos unless its `archive.enabled` says otherwise.' }),
  archiveRetentionDays: Type.Integer({ env: 'ARCHIVE_RETENTION_DAYS', default: 30, minimum: 0, maximum: 36500, description: 'Days an archived video is kept (unless the tenant\'s `archive.retentionDays` says otherwise); 0 keeps it until it is deleted.' }),
  archiveRewriteResults: Type.Boolean({ env: 'ARCHIVE_REWRITE_RESULTS', default: true, description: 'Once a task is archived, its task read lists signed gateway links in `results` (the upstream\'s in `upstream_results`), unless the tenant\'s `archive.rewriteResults` says otherwise.' }),
  archiveLinkTtlMs: Type.Integer({ env: 'ARCHIVE_LINK_TTL_MS', default: 86400000, minimum: 60000, maximum: 604800000, description: 'Lifetime of the signed content links in task reads (minted fresh on every read).' }),
  archiveMaxBytes: Type.Integer({ env: 'ARCHIVE_MAX_BYTES', default: 1073741824, minimum: 1024, description: 'Largest video the archive downloads; a larger one fails its archive.' }),
  archiveDownloadTimeoutMs: Type.Integer({ env: 'ARCHIVE_DOWNLOAD_TIMEOUT_MS', default: 30000, minimum: 100, maximum: 600000, description: 'A result download fails (and is retried) after this long without progress: connect, headers, or silence mid-body.' }),
  archiveJobLeaseMs: Type.Integer({ env: 'ARCHIVE_JOB_LEASE_MS', default: 600000, minimum: 1000, maximum: 86400000, description: 'How long one instance owns an archive job; a job whose instance died is taken over after it. A whole download must end within it.' }),
  archiveRetryBaseDelayMs: Type.Integer({ env: 'ARCHIVE_RETRY_BASE_DELAY_MS', default: 5000, minimum: 10, maximum: 3600000, description: 'First wait before an archive attempt is retried; it doubles per attempt (full jitter, at most 15 min) until the upstream links\' 24 h are over.' }),
  archiveAllowedSources: Type.String({ env: 'ARCHIVE_ALLOWED_SOURCES', default: '', description: 'Comma-separated hostnames and CIDRs that result URLs may point to although private or plain http (as WEBHOOK_ALLOWED_DESTINATIONS). Empty: public https only.' }),
  archiveConcurrency: Type.Integer({ env: 'ARCHIVE_CONCURRENCY', default: 4, minimum: 1, maximum: 256, description: 'Archive jobs each instance works on at once.' }),
  archiveDownloadThreads: Type.Integer({ env: 'ARCHIVE_DOWNLOAD_THREADS', default: 1, minimum: 0, maximum: 64, description: 'Worker threads that download, hash and store archived videos, so that moving the bytes delays no request (at most ARCHIVE_CONCURRENCY; each thread runs several jobs at once; SHA-256 alone runs at ≈ 1.4 GB/s per core). 0: on the main thread.' }),
  archivePollIntervalMs: Type.Integer({ env: 'ARCHIVE_POLL_INTERVAL_MS', default: 1000, minimum: 10, maximum: 3600000, description: 'How often each instance looks for archive jobs and retention deletions that came due (a new job starts at once).' }),
  simulatorTaskDurationMs: Type.Integer({ env: 'SIMULATOR_TASK_DURATION_MS', default: 20000, minimum: 0, description: 'Simulator mode only: how long a simulated video takes.' }),
  taskIndexMaxPerTenant: Type.Integer({ env: 'TASK_INDEX_MAX_PER_TENANT', default: 10000, minimum: 1, maximum: 1000000, description: 'Tasks kept per tenant in the task index behind `GET /v1/videos` (memory, or Redis with REDIS_URL); the oldest go first, and entries older than 30 days are dropped. In memory mode a restart empties it.' }),
  evolinkFilesUrl: Type.String({ env: 'EVOLINK_FILES_URL', default: 'https://files-api.evolink.ai', pattern: '^(https?://[^\\s/]+(/.*)?|off)$', description: 'Origin of the upstream\'s file upload API (its contract as Evolink\'s own client uses it: `POST /api/v1/files/upload/stream`, the upstream key): an image uploaded to `POST /v1/videos` as `input_reference` is hosted there and the upstream gets its link. `off`: uploads are refused (400; an image URL still works). Simulator mode points it at the simulator.' }),
  imageUploadMaxBytes: Type.Integer({ env: 'IMAGE_UPLOAD_MAX_BYTES', default: 10485760, minimum: 1024, maximum: 10485760, description: 'Largest image accepted as an upload (`input_reference` of `POST /v1/videos`); more is 413 image_too_large. The gateway holds at most this much of one upload in memory. The upstream takes images up to 10 MB.' }),
  openaiModelAliases: Type.String({ env: 'OPENAI_MODEL_ALIASES', default: 'sora-2=veo-3.1-fast-generate-preview,sora-2-pro=veo-3.1-fast-generate-preview', pattern: '^([A-Za-z0-9._-]+=[A-Za-z0-9._-]+(,[A-Za-z0-9._-]+=[A-Za-z0-9._-]+)*)?$', description: 'The OpenAI Videos dialect (`POST /v1/videos`): `alias=model` pairs, comma-separated, naming a served model for each OpenAI model name; a served model id is accepted as itself. The video object answers with the name the caller sent.' })
}, { additionalProperties: false })

export type Config = Static<typeof ConfigSchema>

export class ConfigError extends Error {
  override name = 'ConfigError'
}

type EnvSource = Record<string, string | undefined>

function envNameOf (key: string): string {
  const schema = ConfigSchema.properties[key as keyof Config] as TSchema & { env?: string }
  return schema.env ?? key
}

/** Every variable with its schema, in declaration order (for .env.example and the README). */
export function describeConfig (): Array<{ key: keyof Config, env: string, schema: TSchema & { default?: unknown, description?: string } }> {
  return (Object.keys(ConfigSchema.properties) as Array<keyof Config>).map((key) => ({
    key,
    env: envNameOf(key),
    schema: ConfigSchema.properties[key]
  }))
}

/** Applies defaults, validates once, and names the variable at fault. */
export function resolveConfig (overrides: Partial<Config> = {}): Config {
  const withDefaults = Value.Default(ConfigSchema, structuredClone(overrides)) as Record<string, unknown>
  const problem = firstSchemaProblem(ConfigSchema, withDefaults)
  if (problem === null) return withDefaults as Config
  if (problem.path === '') throw new ConfigError(`Invalid configuration: ${problem.message}`)
  const shown = problem.path === 'evolinkApiKey' || problem.path === 'gatewaySecret' || problem.path === 'metricsToken' || problem.path === 'databaseUrl' ? '[redacted]' : JSON.stringify(withDefaults[problem.path])
  throw new ConfigError(`Invalid configuration: ${envNameOf(problem.path)} ${problem.message}, got ${shown}`)
}

/** Reads the configuration from environment variables (empty means unset). */
export function loadConfig (env: EnvSource): Config {
  const values: Record<string, unknown> = {}
  for (const { key, env: name, schema } of describeConfig()) {
    const raw = env[name]
    if (raw === undefined || raw === '') continue
    values[key] = convertEnvValue(raw, schema)
  }
  return resolveConfig(values as Partial<Config>)
}

function convertEnvValue (raw: string, schema: TSchema & { type?: unknown }): unknown {
  if (schema.type === 'integer') return /^-?\d+$/.test(raw.trim()) ? Number(raw.trim()) : raw
  if (schema.type === 'boolean') {
    const lowered = raw.trim().toLowerCase()
    if (lowered === 'true' || lowered === '1') return true
    if (lowered === 'false' || lowered === '0') return false
    return raw
  }
  return raw
}

/** Fastify's `trustProxy` from the TRUST_PROXY string. */
export function parseTrustProxy (value: string): boolean | string[] | ((address: string, hop: number) => boolean) {
  const trimmed = value.trim()
  if (trimmed === 'false' || trimmed === '') return false
  if (trimmed === 'true') return true
  if (/^\d+$/.test(trimmed)) {
    const hops = Number(trimmed)
    return (_address, hop) => hop < hops
  }
  return trimmed.split(',').map((part) => part.trim()).filter(Boolean)
}

/** The signing secrets, first one current. */
export function gatewaySecrets (config: Pick<Config, 'gatewaySecret'>): string[] {
  return config.gatewaySecret.split(',').map((secret) => secret.trim()).filter(Boolean)
}

const minimumSecretLength = 32

/**
 * The boot rules of the secrets and the tenants, each said once: buildApp and
 * the bootstrap (which checks before starting anything) both call these.
 */
export function requireGatewaySecrets (config: Pick<Config, 'gatewaySecret'>): string[] {
  const secrets = gatewaySecrets(config)
  if (secrets.length === 0) throw new ConfigError('GATEWAY_SECRET is required with EVOLINK_API_KEY: it signs task ids, and every replica needs the same one (32+ characters, e.g. `openssl rand -base64 48`)')
  if (secrets.some((secret) => secret.length < minimumSecretLength)) throw new ConfigError(`GATEWAY_SECRET: each secret needs at least ${minimumSecretLength} characters`)
  return secrets
}

export function requireTenantsFile (config: Pick<Config, 'tenantsFile'>): string {
  if (config.tenantsFile === '') throw new ConfigError('TENANTS_FILE is required with EVOLINK_API_KEY (see .env.example; `npm run tenant-key -- <tenant id>` makes a key)')
  return config.tenantsFile
}
