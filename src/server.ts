import { existsSync } from 'node:fs'
import { Server as NetServer, type AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import closeWithGrace from 'close-with-grace'
import { pino } from 'pino'
import { Counter } from 'prom-client'
import { buildApp } from './app.ts'
import { prepareRuntime } from './bootstrap.ts'
import { loadConfig } from './config.ts'
import { loggerOptions } from './logger.ts'
import { createLogDestination } from './log-destination.ts'
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
// Logging is lossy, serving is not: a reader of stdout that is slow, stops reading or goes away
// (`| head -n 2`) costs log lines (counted), never an answer or a shutdown (log-destination.ts).
const logStream = createLogDestination({ fd: 1, maxBufferedBytes: config.logBufferBytes })
// A write to a closed stderr (EPIPE) is reported as an 'error' event: not a crash. (Nothing else
// writes to stdout: process.stdout is not even opened, so fd 1 has one writer, the log's.)
process.stderr.on('error', () => {})
const logger = pino(loggerOptions(config), logStream)
/** Before exiting: what is buffered goes out, for a bounded time (a reader that stopped reading never holds the exit). */
const flushLog = async (): Promise<void> => { await logStream.flushWithin({ timeoutMs: 1000 }) }
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
  // eslint-disable-next-line no-new -- registered in the app's registry, read at scrape time
  new Counter({
    name: 'vg_log_lines_dropped_total',
    help: 'Log lines dropped because stdout was not read fast enough or was closed (logging is lossy, serving is not).',
    registers: [app.metrics.registry],
    collect () {
      this.reset()
      this.inc(logStream.droppedLines)
    }
  })
  // (Node checks these two every second: `connectionsCheckingInterval` in app.ts.)

  let metricsListener: MetricsListener | null = null
  let adminListener: AdminListener | null = null
  /** What outlives the app: the metrics and admin listeners, the simulator; then the log. */
  const closeTheRest = async (): Promise<void> => {
    await metricsListener?.close()
    await adminListener?.close()
    await runtime.close()
  }
  // Uncaught errors: close-with-grace closes (within SHUTDOWN_GRACE_MS) and exits 1. Signals are
  // handled below, because close-with-grace exits at once on a second signal, and a supervisor that
  // signals the whole process group (npm, the shell, node) delivers SIGTERM to node twice.
  // SIGHUP reloads the tenants file and never stops the process.
  closeWithGrace({ delay: config.shutdownGraceMs, logger, skip: ['SIGTERM', 'SIGINT', 'SIGHUP'] }, async ({ err }) => {
    logger.error({ err }, 'closing after an uncaught error')
    await app.close()
    await closeTheRest()
    await flushLog()
  })
  let shuttingDown = false
  const shutDown = (signal: NodeJS.Signals): void => {
    if (shuttingDown) {
      // Repeated (process group) signal: the drain and the close go on as planned.
      logger.info({ signal }, 'signal received again; the shutdown already under way continues')
      return
    }
    shuttingDown = true
    const drainMs = config.shutdownDrainMs
    logger.info({ signal, drainMs }, 'shutting down: draining (readyz 503, Connection: close on every answer)')
    app.shutdownDrain.begin()
    // The last resort, past the drain and the grace period: exit 1 with the log flushed.
    setTimeout(() => {
      logger.error({ drainMs, graceMs: config.shutdownGraceMs }, 'shutdown timed out, exiting')
      flushLog().finally(() => process.exit(1))
    }, drainMs + config.shutdownGraceMs).unref()
    setTimeout(() => {
      logger.info({ signal }, 'shutting down: drain over, closing the listener and waiting for in-flight requests')
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
        return flushLog().finally(() => process.exit(0))
      }, (error: unknown) => {
        logger.error({ err: error }, 'error while shutting down')
        return flushLog().finally(() => process.exit(1))
      })
    }, drainMs)
  }
  process.on('SIGTERM', shutDown)
  process.on('SIGINT', shutDown)
  process.on('SIGHUP', () => {
    logger.info({ signal: 'SIGHUP' }, 'SIGHUP received: reloading the tenants file')
    // reload() never rejects: a bad file is logged and counted, the running tenants stay.
    app.tenantRegistry.reload().catch(() => {})
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
  if (runtime.demoTenantKey !== null) {
    // The port it got, not the one asked for: PORT=0 binds a free one.
    const { port } = app.server.address() as AddressInfo
    const address = httpUrl(config.host, port)
    // Through the log's destination: the same stdout, in order with the log lines, and never blocking.
    logStream.write([
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
  logger.fatal(failure.userMistake ? { code: failure.code } : { err: error }, failure.line)
  await flushLog()
  process.stderr.write(`${failure.line}\n`)
  process.exit(1)
}
