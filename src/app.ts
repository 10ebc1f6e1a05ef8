import { randomUUID } from 'node:crypto'
import type { Server } from 'node:http'
import Fastify, { LogController, type FastifyBaseLogger, type FastifyHttpOptions, type FastifyInstance, type RawRequestDefaultExpression } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { Dispatcher } from 'undici'
import type { DestinationStream } from 'pino'
import packageJson from '../package.json' with { type: 'json' }
import { ConfigError, parseTrustProxy, requireGatewaySecrets, requireTenantsFile, resolveConfig, type Config } from './config.ts'
import { lazyRequestLogger, loggerOptions, requestIdLogLabel } from './logger.ts'
import { buildTenantRegistry, readTenantsFile } from './features/tenants/registry.ts'
import type { TenantDefinition } from './schemas/tenants.ts'
import { ErrorResponse } from './schemas/errors.ts'
import redisStore from './features/store/plugin.ts'
import database from './features/database/plugin.ts'
import rateLimit from './plugins/external/rate-limit.ts'
import errorHandler, { clientErrorHandler, expectationHandler, sendError } from './errors/handler.ts'
import upstreamClient from './features/upstream/client.ts'
import upstreamFiles from './features/upstream/files.ts'
import upstreamBreaker from './features/upstream/breaker.ts'
import idempotency from './features/idempotency/plugin.ts'
import gracefulShutdown from './http/graceful-shutdown.ts'
import taskIds from './features/tasks/ids.ts'
import taskStatus from './features/tasks/status.ts'
import taskIndex from './features/tasks/task-index.ts'
import { parseModelAliases } from './features/openai/mapping.ts'
import browserTokens from './features/browser-tokens/plugin.ts'
import metrics from './features/observability/metrics.ts'
import tenantUsage from './features/usage/plugin.ts'
import webhooks from './features/webhooks/plugin.ts'
import { parseDestinationPolicy, type LookupFunction } from './http/destination.ts'
import tenantAuth from './features/tenants/auth.ts'
import tenantRegistry from './features/tenants/reload.ts'
import tenantSync from './features/database/tenant-sync.ts'
import tenantRateLimit from './features/tenants/rate-limit.ts'
import admin from './features/admin/plugin.ts'
import requestLogging from './features/observability/request-logging.ts'
import cors from './plugins/external/cors.ts'
import archive from './features/archive/plugin.ts'
import { createDirectoryStorage } from './features/archive/storage/directory.ts'
import type { ArchiveStorage } from './features/archive/storage/storage.ts'
import responseHeaders from './http/response-headers.ts'
import swagger from './plugins/external/swagger.ts'
import tracing from './features/observability/tracing.ts'
import healthRoutes from './routes/health.ts'
import demoRoutes from './routes/demo.ts'
import v1Routes from './routes/v1/index.ts'
import callbackRoutes from './routes/callbacks.ts'

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

export interface BuildAppOptions {
  /** any configuration value; the rest come from ConfigSchema's defaults */
  config?: Partial<Config>
  /**
   * tenants as in TENANTS_FILE; when absent, read from `config.tenantsFile`, or in database mode
   * (`config.databaseUrl`) loaded from PostgreSQL and kept current. Given, they win in both modes.
   */
  tenants?: readonly TenantDefinition[]
  /**
   * The file the tenants are reloaded from (`app.tenantRegistry.reload()`, SIGHUP, a watched change).
   * Default: `config.tenantsFile` when `tenants` is absent (they were read from it); none otherwise
   * (the simulator's demo tenant: a reload does nothing). server.ts passes TENANTS_FILE.
   */
  tenantsFile?: string | null
  /** watch `tenantsFile`'s directory and reload on changes (server.ts turns it on; default off) */
  watchTenantsFile?: boolean
  /**
   * Where and how much to log; merged over the production options (redaction,
   * serializers), which always apply. `false`: no logging. Default: stdout at `config.logLevel`.
   */
  logger?: false | { level?: string, stream?: DestinationStream }
  /** an existing pino logger (server.ts shares one with the bootstrap) */
  loggerInstance?: FastifyBaseLogger
  /**
   * Simulator mode's demo tenant: with DEMO_PAGE=auto the demo page is served, and
   * POST /demo/token mints browser tokens for this tenant (server.ts passes it).
   */
  demoTenantId?: string
  /** what tests replace; production wiring needs none of it */
  seams?: AppSeams
}

const requestIdPattern = /^[A-Za-z0-9._:-]{1,128}$/

/** Honours a caller's x-request-id when it is sane, so traces join up; otherwise mints one. */
function requestId (request: RawRequestDefaultExpression): string {
  const presented = request.headers['x-request-id']
  return typeof presented === 'string' && requestIdPattern.test(presented) ? presented : randomUUID()
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

/** The archive's storage: the bucket when one is named, else the directory, else none. */
async function openArchiveStorage (config: Config): Promise<ArchiveStorage | null> {
  try {
    if (config.archiveS3Bucket !== '') {
      // Loaded only for a bucket: the AWS SDK weighs ~34 MB of memory (RSS) that every other gateway would carry.
      const { createS3Storage } = await import('./features/archive/storage/s3.ts')
      return await createS3Storage({
        bucket: config.archiveS3Bucket,
        region: config.archiveS3Region,
        forcePathStyle: config.archiveS3ForcePathStyle,
        prefix: config.archiveS3Prefix,
        ...(config.archiveS3Endpoint === '' ? {} : { endpoint: config.archiveS3Endpoint })
      })
    }
    if (config.archiveDir !== '') return await createDirectoryStorage({ root: config.archiveDir })
  } catch (error) {
    const variable = config.archiveS3Bucket !== '' ? 'ARCHIVE_S3_BUCKET' : 'ARCHIVE_DIR'
    throw new ConfigError(`${variable}: the archive storage cannot be opened (${(error as Error).message})`, { cause: error })
  }
  return null
}

/** Builds the gateway; never listens (server.ts does). */
export async function buildApp (options: BuildAppOptions = {}): Promise<FastifyInstance> {
  const config = resolveConfig(options.config)
  const seams = options.seams ?? {}
  if (config.evolinkApiKey === '') throw new ConfigError('EVOLINK_API_KEY is empty (server.ts starts the simulator in that case; buildApp needs an upstream and its key)')
  const secrets = requireGatewaySecrets(config)
  const databaseMode = config.databaseUrl !== ''
  // Database mode: the tenants are PostgreSQL's, not a file's.
  const tenantsFile = databaseMode ? null : options.tenantsFile ?? (options.tenants === undefined ? requireTenantsFile(config) : null)
  const tenants = options.tenants ?? (databaseMode ? [] : readTenantsFile(requireTenantsFile(config)))
  const registry = buildTenantRegistry(tenants)
  let openaiAliases
  try {
    openaiAliases = parseModelAliases(config.openaiModelAliases)
  } catch (error) {
    throw new ConfigError((error as Error).message, { cause: error })
  }
  let webhookPolicy
  let archiveSourcePolicy
  try {
    webhookPolicy = parseDestinationPolicy(config.webhookAllowedDestinations)
    archiveSourcePolicy = parseDestinationPolicy(config.archiveAllowedSources, 'ARCHIVE_ALLOWED_SOURCES')
  } catch (error) {
    throw new ConfigError((error as Error).message, { cause: error })
  }

  const errorOptions = {
    bodyLimitBytes: config.bodyLimitBytes,
    notFoundRateLimit: { max: config.unauthenticatedRateLimitMax, timeWindowMs: config.unauthenticatedRateLimitWindowMs }
  }
  const serverOptions: FastifyHttpOptions<Server> = {
    ...(options.loggerInstance === undefined
      ? { logger: options.logger === false ? false : { ...loggerOptions(config), ...options.logger } }
      : { loggerInstance: options.loggerInstance }),
    bodyLimit: config.bodyLimitBytes,
    trustProxy: parseTrustProxy(config.trustProxy),
    // request-logging.ts writes one line per request instead of Fastify's two
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel }),
    // request.log's pino child is made when something logs through it (logger.ts)
    childLoggerFactory: lazyRequestLogger,
    requestIdHeader: false,
    genReqId: requestId,
    // above TaskParams' maxLength, so that an overlong id gets the schema's clear 400
    routerOptions: { maxParamLength: 1024 },
    // Bad URL encodings fail before routing: answer them in the one format too.
    frameworkErrors: (error, request, reply) => { sendError(error, request, reply, errorOptions) },
    // Errors before a request exists (oversized headers, malformed HTTP) too.
    clientErrorHandler,
    http: {
      // A request without Host is answered like any other, in the format, instead of Node's empty 400.
      requireHostHeader: false,
      // Node enforces the headers and request timeouts (server.ts) only when it checks
      // connections, every 30 s by default: a slow client would outlive its timeout by that much.
      connectionsCheckingInterval: 1000
    },
    // graceful-shutdown.ts answers requests that arrive while closing, in the one error format
    return503OnClosing: false,
    ajv: {
      customOptions: {
        // Unknown fields are errors (a typo must not silently cost money), types are
        // not coerced ("4" is not 4), and nothing is added: the body is forwarded as sent.
        removeAdditional: false,
        coerceTypes: false,
        useDefaults: false,
        allErrors: false
      }
    }
  }
  const app = Fastify(serverOptions).withTypeProvider<TypeBoxTypeProvider>()

  app.server.on('checkExpectation', expectationHandler)
  // A JSON-only API: other bodies get 415 rather than reaching validation as strings.
  app.removeContentTypeParser('text/plain')
  app.addSchema(ErrorResponse)
  await app.register(redisStore, { redisUrl: config.redisUrl, keyPrefix: config.redisKeyPrefix, outagePolicy: redisOutagePolicy(config) })
  await app.register(database, { databaseUrl: config.databaseUrl })
  await app.register(rateLimit, { onStoreError: config.rateLimitOnStoreError })
  await app.register(errorHandler, errorOptions)
  await app.register(gracefulShutdown)
  await app.register(upstreamBreaker, { failureThreshold: config.upstreamBreakerFailures, openMs: config.upstreamBreakerOpenMs })
  await app.register(metrics, { token: config.metricsToken })
  await app.register(tracing, {
    tracesEndpoint: config.otelExporterOtlpTracesEndpoint,
    endpoint: config.otelExporterOtlpEndpoint,
    serviceName: config.otelServiceName,
    serviceVersion: packageJson.version
  })
  await app.register(upstreamClient, {
    baseUrl: config.evolinkBaseUrl,
    apiKey: config.evolinkApiKey,
    timeoutMs: config.upstreamTimeoutMs,
    connections: config.upstreamConnections,
    maxResponseBytes: config.upstreamMaxResponseBytes,
    dispatcher: seams.upstreamDispatcher,
    retry: { attempts: config.upstreamRetryAttempts, baseDelayMs: config.upstreamRetryBaseDelayMs, maxDelayMs: config.upstreamRetryMaxDelayMs }
  })
  await app.register(upstreamFiles, {
    baseUrl: config.evolinkFilesUrl === 'off' ? null : config.evolinkFilesUrl,
    apiKey: config.evolinkApiKey,
    timeoutMs: config.upstreamTimeoutMs,
    maxResponseBytes: config.upstreamMaxResponseBytes
  })
  await app.register(taskIds, { secrets })
  await app.register(taskStatus, {
    statusTtlMs: config.taskStatusTtlMs,
    terminalTtlMs: config.taskTerminalTtlMs,
    memoryMaxEntries: config.taskCacheMaxEntries,
    upstreamTimeoutMs: config.upstreamTimeoutMs,
    now: seams.clock
  })
  await app.register(taskIndex, { maxEntriesPerTenant: config.taskIndexMaxPerTenant, retentionMs: taskIndexRetentionMs, now: seams.clock })
  await app.register(tenantRegistry, { registry, file: tenantsFile, watch: options.watchTenantsFile, now: seams.clock })
  // Database mode: the registry is PostgreSQL's, loaded now and kept current by LISTEN/NOTIFY
  // (tenants given in code win: a test that wants a pool but fixed tenants).
  await app.register(tenantSync, {
    databaseUrl: databaseMode && options.tenants === undefined ? config.databaseUrl : '',
    refreshMs: config.databaseRefreshMs,
    now: seams.clock
  })
  await app.register(browserTokens, { secrets, now: seams.clock })
  await app.register(tenantUsage, {
    staleMs: config.taskConcurrencyStaleMs,
    requestCountFlushMs: config.usageFlushMs,
    ledger: { flushMs: config.ledgerFlushMs, claimIdleMs: config.ledgerClaimIdleMs },
    now: seams.clock
  })
  await app.register(webhooks, {
    publicBaseUrl: config.publicBaseUrl,
    policy: webhookPolicy,
    maxAttempts: config.webhookMaxAttempts,
    timeoutMs: config.webhookTimeoutMs,
    registrationTtlMs: config.webhookRegistrationTtlMs,
    pollIntervalMs: config.webhookPollIntervalMs,
    stopGraceMs: config.shutdownJobGraceMs,
    now: seams.clock,
    lookup: seams.dnsLookup
  })
  await app.register(tenantAuth, {
    unauthenticatedRateLimit: { max: config.unauthenticatedRateLimitMax, timeWindowMs: config.unauthenticatedRateLimitWindowMs }
  })
  await app.register(tenantRateLimit)
  await app.register(archive, {
    storage: await openArchiveStorage(config),
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
    now: seams.clock,
    lookup: seams.dnsLookup
  })
  await app.register(idempotency, {
    ttlMs: config.idempotencyTtlMs,
    // Longer than any request can run (one upstream call, plus one retry of a refused connect), so that
    // a key is never freed under a running request; short enough that a crashed instance frees it soon.
    lockTtlMs: 2 * config.upstreamTimeoutMs + 10_000,
    memoryMaxKeys: config.idempotencyMemoryMaxKeys
  })
  await app.register(responseHeaders)
  await app.register(requestLogging)
  await app.register(cors)
  await app.register(swagger, { version: packageJson.version })
  await app.register(healthRoutes)
  // After swagger, which documents only the routes registered after it.
  await app.register(admin, {
    tokenHashes: config.adminTokens,
    adminPort: config.adminPort,
    unauthenticatedRateLimit: { max: config.unauthenticatedRateLimitMax, timeWindowMs: config.unauthenticatedRateLimitWindowMs },
    now: seams.clock
  })
  const demoTenantId = options.demoTenantId ?? null
  if (config.demoPage === 'on' || (config.demoPage === 'auto' && demoTenantId !== null)) {
    await app.register(demoRoutes, {
      demoTenantId,
      tokenRateLimit: { max: config.unauthenticatedRateLimitMax, timeWindowMs: config.unauthenticatedRateLimitWindowMs }
    })
  }
  await app.register(callbackRoutes, { bodyLimitBytes: config.upstreamMaxResponseBytes })
  await app.register(v1Routes, {
    prefix: '/v1',
    taskEventsHeartbeatMs: config.taskEventsHeartbeatMs,
    taskEventsMaxMs: config.taskEventsMaxMs,
    openai: { aliases: openaiAliases, pollAfterMs: config.taskStatusTtlMs, bodyLimitBytes: config.bodyLimitBytes, imageUploadMaxBytes: config.imageUploadMaxBytes }
  })
  return app
}
