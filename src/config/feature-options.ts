import packageJson from '../../package.json' with { type: 'json' }
import { ConfigError, type Config } from '../config.ts'
import type { LookupFunction } from '../http/destination.ts'
import { parseDestinationPolicy } from '../http/destination.ts'
import { parseModelAliases } from '../features/openai/mapping.ts'
import type { Dispatcher } from 'undici'
import type { ArchiveStorage, StorageDescriptor } from '../features/archive/storage/storage.ts'
import { openStorage } from '../features/archive/storage/open.ts'
import type { ErrorHandlerOptions } from '../errors/handler.ts'
import type { RedisStoreOptions } from '../features/store/plugin.ts'
import type { DatabaseOptions } from '../features/database/plugin.ts'
import type { RateLimitPluginOptions } from '../plugins/external/rate-limit.ts'
import type { UpstreamBreakerOptions } from '../features/upstream/breaker.ts'
import type { MetricsOptions } from '../features/observability/metrics.ts'
import type { TracingOptions } from '../features/observability/tracing.ts'
import type { UpstreamClientOptions } from '../features/upstream/client.ts'
import type { UpstreamFilesOptions } from '../features/upstream/files.ts'
import type { TaskStatusOptions } from '../features/tasks/status.ts'
import type { TaskIndexOptions } from '../features/tasks/task-index.ts'
import type { BrowserTokensOptions } from '../features/browser-tokens/plugin.ts'
import type { TenantUsageOptions } from '../features/usage/plugin.ts'
import type { WebhooksOptions } from '../features/webhooks/plugin.ts'
import type { TenantAuthOptions } from '../features/tenants/auth.ts'
import type { ArchiveOptions } from '../features/archive/plugin.ts'
import type { IdempotencyOptions } from '../features/idempotency/plugin.ts'
import type { AdminOptions } from '../features/admin/plugin.ts'
import type { CallbackRoutesOptions } from '../routes/callbacks.ts'
import type { V1RoutesOptions } from '../routes/v1/index.ts'

/**
 * The gateway's test seams, all in one place. Each defaults to the real thing.
 */
export interface AppSeams {
  /**
   * The clock (ms) of everything that keeps time by the wall clock: the task
   * status cache, browser tokens, budget windows and usage days, concurrency
   * slot deadlines, the webhook retry schedule. A test that moves it moves the
   * simulator's clock along (both read the same function).
   */
  clock?: () => number
  /** replaces the upstream connection pool (undici MockAgent, a proxy...) */
  upstreamDispatcher?: Dispatcher
  /** the DNS lookup of webhook destinations */
  dnsLookup?: LookupFunction
}

/** The task index keeps a tenant's tasks this long (the upstream forgets them sooner). */
const taskIndexRetentionMs = 30 * 24 * 60 * 60 * 1000

const storeErrorPolicies = {
  memory: 'rate limits count per instance',
  allow: 'rate limits are not enforced',
  deny: 'rate-limited requests get 503'
} as const

/** What the gateway does while Redis is down: said once, in the outage warning. */
function redisOutagePolicy (config: Config): string {
  return `${storeErrorPolicies[config.rateLimitOnStoreError]}, requests with an Idempotency-Key and creates of tenants with a budget or concurrency cap get 503, until it is back`
}

/** A value that is parsed beyond its schema (a list of CIDRs, of aliases): its error names the variable as a ConfigError. */
function parsed<T> (parse: () => T): T {
  try {
    return parse()
  } catch (error) {
    throw new ConfigError((error as Error).message, { cause: error })
  }
}

/**
 * Every feature's options, as the configuration sets them: the one place where
 * the environment's names (Config) become each feature's own words, so that
 * features know nothing of Config and app.ts only composes. Everything here is
 * checked before the first plugin starts (a bad value fails the boot at once,
 * naming its variable, before Redis or PostgreSQL are connected). The archive's
 * storage is opened later, by `openArchiveStorage`, since that is I/O.
 */
// The return type is the object literal's: one name per feature, each checked against its plugin's options by `satisfies`.
export function featureOptions (config: Config, seams: AppSeams, secrets: string[]) {
  const unauthenticatedRateLimit = { max: config.unauthenticatedRateLimitMax, timeWindowMs: config.unauthenticatedRateLimitWindowMs }
  const errors: ErrorHandlerOptions = { bodyLimitBytes: config.bodyLimitBytes, notFoundRateLimit: unauthenticatedRateLimit }
  const webhookPolicy = parsed(() => parseDestinationPolicy(config.webhookAllowedDestinations))
  const archiveSourcePolicy = parsed(() => parseDestinationPolicy(config.archiveAllowedSources, 'ARCHIVE_ALLOWED_SOURCES'))
  const openaiAliases = parsed(() => parseModelAliases(config.openaiModelAliases))
  const now = seams.clock
  return {
    errors,
    redisStore: { redisUrl: config.redisUrl, keyPrefix: config.redisKeyPrefix, outagePolicy: redisOutagePolicy(config) } satisfies RedisStoreOptions,
    database: { databaseUrl: config.databaseUrl } satisfies DatabaseOptions,
    rateLimit: { onStoreError: config.rateLimitOnStoreError } satisfies RateLimitPluginOptions,
    upstreamBreaker: { failureThreshold: config.upstreamBreakerFailures, openMs: config.upstreamBreakerOpenMs } satisfies UpstreamBreakerOptions,
    metrics: { token: config.metricsToken } satisfies MetricsOptions,
    tracing: {
      tracesEndpoint: config.otelExporterOtlpTracesEndpoint,
      endpoint: config.otelExporterOtlpEndpoint,
      serviceName: config.otelServiceName,
      serviceVersion: packageJson.version
    } satisfies TracingOptions,
    upstreamClient: {
      baseUrl: config.evolinkBaseUrl,
      apiKey: config.evolinkApiKey,
      timeoutMs: config.upstreamTimeoutMs,
      connections: config.upstreamConnections,
      maxResponseBytes: config.upstreamMaxResponseBytes,
      dispatcher: seams.upstreamDispatcher,
      retry: { attempts: config.upstreamRetryAttempts, baseDelayMs: config.upstreamRetryBaseDelayMs, maxDelayMs: config.upstreamRetryMaxDelayMs }
    } satisfies UpstreamClientOptions,
    upstreamFiles: {
      baseUrl: config.evolinkFilesUrl === 'off' ? null : config.evolinkFilesUrl,
      apiKey: config.evolinkApiKey,
      timeoutMs: config.upstreamTimeoutMs,
      maxResponseBytes: config.upstreamMaxResponseBytes
    } satisfies UpstreamFilesOptions,
    taskIds: { secrets },
    taskStatus: {
      statusTtlMs: config.taskStatusTtlMs,
      terminalTtlMs: config.taskTerminalTtlMs,
      memoryMaxEntries: config.taskCacheMaxEntries,
      upstreamTimeoutMs: config.upstreamTimeoutMs,
      now
    } satisfies TaskStatusOptions,
    taskIndex: { maxEntriesPerTenant: config.taskIndexMaxPerTenant, retentionMs: taskIndexRetentionMs, now } satisfies TaskIndexOptions,
    browserTokens: { secrets, now } satisfies BrowserTokensOptions,
    tenantUsage: {
      staleMs: config.taskConcurrencyStaleMs,
      requestCountFlushMs: config.usageFlushMs,
      ledger: { flushMs: config.ledgerFlushMs, claimIdleMs: config.ledgerClaimIdleMs },
      now
    } satisfies TenantUsageOptions,
    webhooks: {
      publicBaseUrl: config.publicBaseUrl,
      policy: webhookPolicy,
      maxAttempts: config.webhookMaxAttempts,
      timeoutMs: config.webhookTimeoutMs,
      registrationTtlMs: config.webhookRegistrationTtlMs,
      pollIntervalMs: config.webhookPollIntervalMs,
      stopGraceMs: config.shutdownJobGraceMs,
      now,
      lookup: seams.dnsLookup
    } satisfies WebhooksOptions,
    tenantAuth: { unauthenticatedRateLimit } satisfies TenantAuthOptions,
    archive: (storage: ArchiveStorage | null) => ({
      storage,
      defaults: { enabled: config.archiveEnabled, retentionDays: config.archiveRetentionDays, rewriteResults: config.archiveRewriteResults },
      secrets,
      linkTtlMs: config.archiveLinkTtlMs,
      sourcePolicy: archiveSourcePolicy,
      maxBytes: config.archiveMaxBytes,
      downloadIdleTimeoutMs: config.archiveDownloadTimeoutMs,
      leaseMs: config.archiveJobLeaseMs,
      retryBaseDelayMs: config.archiveRetryBaseDelayMs,
      concurrency: config.archiveConcurrency,
      downloadThreads: config.archiveDownloadThreads,
      pollIntervalMs: config.archivePollIntervalMs,
      stopGraceMs: config.shutdownJobGraceMs,
      now,
      lookup: seams.dnsLookup
    } satisfies ArchiveOptions),
    idempotency: {
      ttlMs: config.idempotencyTtlMs,
      // Longer than any request can run (one upstream call, plus one retry of a refused connect), so that
      // a key is never freed under a running request; short enough that a crashed instance frees it soon.
      lockTtlMs: 2 * config.upstreamTimeoutMs + 10_000,
      memoryMaxKeys: config.idempotencyMemoryMaxKeys
    } satisfies IdempotencyOptions,
    admin: { tokenHashes: config.adminTokens, adminPort: config.adminPort, unauthenticatedRateLimit, now } satisfies AdminOptions,
    demoTokenRateLimit: unauthenticatedRateLimit,
    callbacks: { bodyLimitBytes: config.upstreamMaxResponseBytes } satisfies CallbackRoutesOptions,
    v1: {
      prefix: '/v1',
      taskEventsHeartbeatMs: config.taskEventsHeartbeatMs,
      taskEventsMaxMs: config.taskEventsMaxMs,
      openai: { aliases: openaiAliases, pollAfterMs: config.taskStatusTtlMs, bodyLimitBytes: config.bodyLimitBytes, imageUploadMaxBytes: config.imageUploadMaxBytes }
    } satisfies V1RoutesOptions & { prefix: string }
  }
}

export type FeatureOptions = ReturnType<typeof featureOptions>

/** The archive's storage: the bucket when one is named, else the directory, else none. */
export async function openArchiveStorage (config: Config): Promise<ArchiveStorage | null> {
  const descriptor: StorageDescriptor | null = config.archiveS3Bucket !== ''
    ? {
        kind: 's3',
        bucket: config.archiveS3Bucket,
        region: config.archiveS3Region,
        forcePathStyle: config.archiveS3ForcePathStyle,
        prefix: config.archiveS3Prefix,
        ...(config.archiveS3Endpoint === '' ? {} : { endpoint: config.archiveS3Endpoint })
      }
    : config.archiveDir !== '' ? { kind: 'directory', root: config.archiveDir } : null
  if (descriptor === null) return null
  try {
    return await openStorage(descriptor, { clean: true })
  } catch (error) {
    const variable = descriptor.kind === 's3' ? 'ARCHIVE_S3_BUCKET' : 'ARCHIVE_DIR'
    throw new ConfigError(`${variable}: the archive storage cannot be opened (${(error as Error).message})`, { cause: error })
  }
}
