import { existsSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import closeWithGrace from 'close-with-grace'
import { destination, pino } from 'pino'
import { buildApp } from './app.ts'
import { prepareRuntime } from './bootstrap.ts'
import { loadConfig } from './config.ts'
import { loggerOptions } from './logger.ts'
import { describeStartupFailure } from './features/settings/startup-errors.ts'
import { findUnknownSettings, unknownSettingMessage } from './features/settings/unknown-settings.ts'
import { startMetricsListener, type MetricsListener } from './features/observability/metrics-listener.ts'
import { httpUrl } from './http/url.ts'

const listenBacklog = 4096

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
  const app = await buildApp({ config: runtime.config, tenants: runtime.tenants, loggerInstance: logger, demoTenantId: runtime.demoTenantId ?? undefined })

  // Explicit bounds on slow, idle and too many clients (slowloris, dribbled bodies, floods).
  app.server.headersTimeout = config.serverHeadersTimeoutMs
  app.server.requestTimeout = config.serverRequestTimeoutMs
  app.server.keepAliveTimeout = config.serverKeepAliveTimeoutMs
  app.server.maxConnections = config.serverMaxConnections
  // (Node checks these two every second: `connectionsCheckingInterval` in app.ts.)

  let metricsListener: MetricsListener | null = null
  closeWithGrace({ delay: config.shutdownGraceMs, logger }, async ({ signal, err }) => {
    if (err !== undefined) logger.error({ err }, 'closing after an uncaught error')
    else logger.info({ signal }, 'shutting down')
    await app.close()
    await metricsListener?.close()
    await runtime.close()
    logStream.flushSync()
  })

  // Node's default accept queue (511) overflowed when 1,000 clients connected at once in the
  // bench's polling storm (kernel ListenOverflows, then SYN retries of seconds); the kernel caps it at somaxconn.
  await app.listen({ port: config.port, host: config.host, backlog: listenBacklog })
  if (config.metricsPort !== 0) {
    metricsListener = await startMetricsListener({ registry: app.metrics.registry, host: config.host, port: config.metricsPort })
    logger.info({ url: `${metricsListener.url}/metrics` }, 'Prometheus metrics served on their own port')
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
