import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { DestinationStream } from 'pino'
import { ConfigError, requireGatewaySecrets, requireTenantsFile, resolveConfig, type Config } from './config.ts'
import { featureOptions, openArchiveStorage, type AppSeams } from './config/feature-options.ts'
import { serverOptions } from './http/server-options.ts'
import { buildTenantRegistry, readTenantsFile } from './features/tenants/registry.ts'
import type { TenantDefinition } from './schemas/tenants.ts'
import { ErrorResponse } from './schemas/errors.ts'
import redisStore from './features/store/plugin.ts'
import database from './features/database/plugin.ts'
import rateLimit from './plugins/external/rate-limit.ts'
import errorHandler, { expectationHandler } from './errors/handler.ts'
import upstreamClient from './features/upstream/client.ts'
import upstreamFiles from './features/upstream/files.ts'
import upstreamBreaker from './features/upstream/breaker.ts'
import idempotency from './features/idempotency/plugin.ts'
import gracefulShutdown from './http/graceful-shutdown.ts'
import taskIds from './features/tasks/ids.ts'
import taskStatus from './features/tasks/status.ts'
import taskIndex from './features/tasks/task-index.ts'
import browserTokens from './features/browser-tokens/plugin.ts'
import metrics from './features/observability/metrics.ts'
import tenantUsage from './features/usage/plugin.ts'
import webhooks from './features/webhooks/plugin.ts'
import tenantAuth from './features/tenants/auth.ts'
import tenantRegistry from './features/tenants/reload.ts'
import tenantSync from './features/database/tenant-sync.ts'
import tenantRateLimit from './features/tenants/rate-limit.ts'
import admin from './features/admin/plugin.ts'
import requestLogging from './features/observability/request-logging.ts'
import cors from './plugins/external/cors.ts'
import archive from './features/archive/plugin.ts'
import responseHeaders from './http/response-headers.ts'
import swagger from './plugins/external/swagger.ts'
import tracing from './features/observability/tracing.ts'
import healthRoutes from './routes/health.ts'
import demoRoutes from './routes/demo.ts'
import v1Routes from './routes/v1/index.ts'
import callbackRoutes from './routes/callbacks.ts'
import packageJson from '../package.json' with { type: 'json' }

export type { AppSeams } from './config/feature-options.ts'

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

/**
 * Builds the gateway; never listens (server.ts does). Composition only: the
 * options of every feature come from `featureOptions` (config/feature-options.ts),
 * checked before the first plugin starts; the order below is the order of the
 * features' dependencies and of their hooks.
 */
export async function buildApp (options: BuildAppOptions = {}): Promise<FastifyInstance> {
  const config = resolveConfig(options.config)
  if (config.evolinkApiKey === '') throw new ConfigError('EVOLINK_API_KEY is empty (server.ts starts the simulator in that case; buildApp needs an upstream and its key)')
  const feature = featureOptions(config, options.seams ?? {}, requireGatewaySecrets(config))
  const databaseMode = config.databaseUrl !== ''
  // Database mode: the tenants are PostgreSQL's, not a file's.
  const tenantsFile = databaseMode ? null : options.tenantsFile ?? (options.tenants === undefined ? requireTenantsFile(config) : null)
  const tenants = options.tenants ?? (databaseMode ? [] : readTenantsFile(requireTenantsFile(config)))
  const registry = buildTenantRegistry(tenants)

  const app = Fastify(serverOptions({ config, logger: options.logger, loggerInstance: options.loggerInstance, errors: feature.errors }))
    .withTypeProvider<TypeBoxTypeProvider>()
  app.server.on('checkExpectation', expectationHandler)
  // A JSON-only API: other bodies get 415 rather than reaching validation as strings.
  app.removeContentTypeParser('text/plain')
  app.addSchema(ErrorResponse)
  await app.register(redisStore, feature.redisStore)
  await app.register(database, feature.database)
  await app.register(rateLimit, feature.rateLimit)
  await app.register(errorHandler, feature.errors)
  await app.register(gracefulShutdown)
  await app.register(upstreamBreaker, feature.upstreamBreaker)
  await app.register(metrics, feature.metrics)
  await app.register(tracing, feature.tracing)
  await app.register(upstreamClient, feature.upstreamClient)
  await app.register(upstreamFiles, feature.upstreamFiles)
  await app.register(taskIds, feature.taskIds)
  await app.register(taskStatus, feature.taskStatus)
  await app.register(taskIndex, feature.taskIndex)
  await app.register(tenantRegistry, { registry, file: tenantsFile, watch: options.watchTenantsFile, now: options.seams?.clock })
  // Database mode: the registry is PostgreSQL's, loaded now and kept current by LISTEN/NOTIFY
  // (tenants given in code win: a test that wants a pool but fixed tenants).
  await app.register(tenantSync, {
    databaseUrl: databaseMode && options.tenants === undefined ? config.databaseUrl : '',
    refreshMs: config.databaseRefreshMs,
    now: options.seams?.clock
  })
  await app.register(browserTokens, feature.browserTokens)
  await app.register(tenantUsage, feature.tenantUsage)
  await app.register(webhooks, feature.webhooks)
  await app.register(tenantAuth, feature.tenantAuth)
  await app.register(tenantRateLimit)
  await app.register(archive, feature.archive(await openArchiveStorage(config)))
  await app.register(idempotency, feature.idempotency)
  await app.register(responseHeaders)
  await app.register(requestLogging)
  await app.register(cors)
  await app.register(swagger, { version: packageJson.version })
  await app.register(healthRoutes)
  // After swagger, which documents only the routes registered after it.
  await app.register(admin, feature.admin)
  const demoTenantId = options.demoTenantId ?? null
  if (config.demoPage === 'on' || (config.demoPage === 'auto' && demoTenantId !== null)) {
    await app.register(demoRoutes, { demoTenantId, tokenRateLimit: feature.demoTokenRateLimit })
  }
  await app.register(callbackRoutes, feature.callbacks)
  await app.register(v1Routes, feature.v1)
  return app
}
