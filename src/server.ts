import { existsSync } from 'node:fs'
import { Server as NetServer, type AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import closeWithGrace from 'close-with-grace'
import { destination, pino } from 'pino'
import { buildApp } from './app.ts'
import { prepareRuntime } from './bootstrap.ts'
import { loadConfig } from './config.ts'
import { loggerOptions } from './logger.ts'
import { describeStartupFailure } from './errors/startup.ts'
import { findUnknownSettings, unknownSettingMessage } from './config/unknown-settings.ts'
import { startMetricsListener, type MetricsListener } from './features/observability/metrics-listener.ts'
import { startAdminListener, type AdminListener } from './features/admin/listener.ts'
import { httpUrl } from './http/url.ts'

const listenBacklog = 4096
/** After the drain: how long connections accepted just before the listener closed get to send their request. */
const acceptSettleMs = 500

// The only entry point that reads the environment: logger, server timeouts, graceful close, listen.
if (existsSync('.env')) process.loadEnvFile('.env')

let config
try {
  config = loadConfig(process.env)
} catch (error) {
  process.stderr.write(`${(error as Error).message}\n`)
  process.exit(1)
}
// Buffered, asynchronous writes: the access log must not block the event loop (flushed on exit).
const logStream = destination({ dest: 1, sync: false, minLength: 4096 })
const logger = pino(loggerOptions(config), logStream)
// Typos in settings would otherwise be silent: one warning each, never a failure.
for (const setting of findUnknownSettings(process.env)) logger.warn({ setting: setting.name, suggestion: setting.suggestion }, unknownSettingMessage(setting))

try {
  const runtime = await prepareRuntime(config, logger)
  const app = await buildApp({
    config: runtime.config,
    // Database mode (null): buildApp loads them from PostgreSQL and keeps them current.
    ...(runtime.tenants === null ? {} : { tenants: runtime.tenants }),
    // Reloaded on SIGHUP and when the file changes (the embedded demo tenant has no file: nothing to reload).
    tenantsFile: config.tenantsFile === '' ? null : config.tenantsFile,
    watchTenantsFile: true,
    loggerInstance: logger,
    demoTenantId: runtime.demoTenantId ?? undefined
  })

  // Explicit bounds on slow, idle and too many clients (slowloris, dribbled bodies, floods).
  app.server.headersTimeout = config.serverHeadersTimeoutMs
  app.server.requestTimeout = config.serverRequestTimeoutMs
  app.server.keepAliveTimeout = config.serverKeepAliveTimeoutMs
  app.server.maxConnections = config.serverMaxConnections
  // (Node checks these two every second: `connectionsCheckingInterval` in app.ts.)

  let metricsListener: MetricsListener | null = null
  let adminListener: AdminListener | null = null
  /** What outlives the app: the metrics and admin listeners, the simulator; then the log. */
  const closeTheRest = async (): Promise<void> => {
    await metricsListener?.close()
    await adminListener?.close()
    await runtime.close()
    logStream.flushSync()
  }
  // Uncaught errors: close-with-grace closes (within SHUTDOWN_GRACE_MS) and exits 1. Signals are
  // handled below, because close-with-grace exits at once on a second signal, and a supervisor that
  // signals the whole process group (npm, the shell, node) delivers SIGTERM to node twice.
  // SIGHUP reloads the tenants file and never stops the process.
  closeWithGrace({ delay: config.shutdownGraceMs, logger, skip: ['SIGTERM', 'SIGINT', 'SIGHUP'] }, async ({ err }) => {
    logger.error({ err }, 'closing after an uncaught error')
    await app.close()
    await closeTheRest()
  })
  let shuttingDown = false
  const shutDown = (signal: NodeJS.Signals): void => {
    if (shuttingDown) {
      // Repeated (process group) signal: the drain and the close go on as planned.
      logger.info({ signal }, 'signal received again; the shutdown already under way continues')
      logStream.flushSync()
      return
    }
    shuttingDown = true
    const drainMs = config.shutdownDrainMs
    logger.info({ signal, drainMs }, 'shutting down: draining (readyz 503, Connection: close on every answer)')
    app.shutdownDrain.begin()
    // A supervisor may SIGKILL before the buffer fills: the shutdown lines go out at once.
    logStream.flushSync()
    // The last resort, past the drain and the grace period: exit 1 with the log flushed.
    setTimeout(() => {
      logger.error({ drainMs, graceMs: config.shutdownGraceMs }, 'shutdown timed out, exiting')
      logStream.flushSync()
      process.exit(1)
    }, drainMs + config.shutdownGraceMs).unref()
    setTimeout(() => {
      logger.info({ signal }, 'shutting down: drain over, closing the listener and waiting for in-flight requests')
      logStream.flushSync()
      // Stop accepting first, without http.Server.close's closeIdleConnections: a connection accepted
      // a moment ago whose request has not been read yet counts as idle, and closing it resets a
      // request the client already sent. Those requests get their answers during a short settle;
      // then the app closes (idle connections closed, late requests 503 shutting_down), and the
      // listener's callback says every connection has ended.
      const connectionsEnded = new Promise<void>((resolve) => { NetServer.prototype.close.call(app.server, () => { resolve() }) })
      sleep(Math.min(acceptSettleMs, config.shutdownGraceMs)).then(async () => {
        await app.close()
        await connectionsEnded
        await closeTheRest()
      }).then(() => {
        logger.info('shut down cleanly')
        logStream.flushSync()
        process.exit(0)
      }, (error: unknown) => {
        logger.error({ err: error }, 'error while shutting down')
        logStream.flushSync()
        process.exit(1)
      })
    }, drainMs)
  }
  process.on('SIGTERM', shutDown)
  process.on('SIGINT', shutDown)
  process.on('SIGHUP', () => {
    logger.info({ signal: 'SIGHUP' }, 'SIGHUP received: reloading the tenants file')
    // reload() never rejects: a bad file is logged and counted, the running tenants stay.
    app.tenantRegistry.reload().catch(() => {}).finally(() => { logStream.flushSync() })
  })

  // Node's default accept queue (511) overflowed when 1,000 clients connected at once in the
  // bench's polling storm (kernel ListenOverflows, then SYN retries of seconds); the kernel caps it at somaxconn.
  await app.listen({ port: config.port, host: config.host, backlog: listenBacklog })
  if (config.metricsPort !== 0) {
    metricsListener = await startMetricsListener({ registry: app.metrics.registry, host: config.host, port: config.metricsPort })
    logger.info({ url: `${metricsListener.url}/metrics` }, 'Prometheus metrics served on their own port')
  }
  if (config.adminPort !== 0) {
    adminListener = await startAdminListener({ app, host: config.host, port: config.adminPort })
    logger.info({ url: `${adminListener.url}/admin/v1` }, 'admin API served on its own port (not on the main one)')
  }
  // Start-up lines (the simulator-mode warning above all) must not wait in the buffer.
  logStream.flushSync()
  if (runtime.demoTenantKey !== null) {
    // The port it got, not the one asked for: PORT=0 binds a free one.
    const { port } = app.server.address() as AddressInfo
    const address = httpUrl(config.host, port)
    process.stdout.write([
      '',
      '  video-gateway is running on its built-in simulator (no real videos).',
      `  Demo tenant key: ${runtime.demoTenantKey}`,
      `  Demo tenant webhook secret (verifies callback_url deliveries): ${runtime.demoWebhookSecret ?? ''}`,
      '',
      `  curl -s ${address}/v1/videos/generations -H "Authorization: Bearer ${runtime.demoTenantKey}" \\`,
      '    -H "Content-Type: application/json" -d \'{"model":"veo-3.1-fast-generate-preview","prompt":"A cat playing piano"}\'',
      `  Demo page: ${address}/demo`,
      `  API docs: ${address}/docs`,
      '', ''
    ].join('\n'))
  }
} catch (error) {
  const failure = describeStartupFailure(error, config)
  logger.fatal(failure.userMistake ? { code: (error as NodeJS.ErrnoException).code } : { err: error }, failure.line)
  logStream.flushSync()
  process.stderr.write(`${failure.line}\n`)
  process.exit(1)
}
