import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import { ConfigError, requireGatewaySecrets, requireTenantsFile, type Config } from './config.ts'
import { generateTenantKey, generateWebhookSecret, readTenantsFile, tenantKeyHash } from './features/tenants/registry.ts'
import type { TenantDefinition } from './schemas/tenants.ts'
import { startSimulator } from './simulator/start.ts'
import { httpUrl } from './http/url.ts'
import { runMigrations } from './features/database/migrate.ts'

export interface Runtime {
  /** the configuration buildApp gets (in simulator mode: pointed at the simulator) */
  config: Config
  /** null in database mode: buildApp loads them from PostgreSQL */
  tenants: TenantDefinition[] | null
  mode: 'evolink' | 'simulator'
  /** simulator mode without TENANTS_FILE: the demo tenant's key, to print once */
  demoTenantKey: string | null
  /** simulator mode without TENANTS_FILE: the demo tenant, for whom the demo page gets tokens */
  demoTenantId: string | null
  /** simulator mode without TENANTS_FILE: the demo tenant's webhook signing secret, to print once */
  demoWebhookSecret: string | null
  close (): Promise<void>
}

/** The gateway's own address on loopback (empty with PORT=0: the port is not known before listening). */
function loopbackBaseUrl (config: Config): string {
  if (config.port === 0) return ''
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host
  return httpUrl(host, config.port)
}

/**
 * Decides what the gateway talks to. With EVOLINK_API_KEY: the real upstream,
 * and TENANTS_FILE and GATEWAY_SECRET are required. Without it: the built-in
 * simulator on a loopback port, and (unless TENANTS_FILE is given) a demo tenant.
 */
export async function prepareRuntime (config: Config, log: FastifyBaseLogger): Promise<Runtime> {
  const databaseMode = config.databaseUrl !== ''
  if (databaseMode) {
    // Before anything listens: every replica queues behind one advisory lock, the first one migrates.
    try {
      await runMigrations({ databaseUrl: config.databaseUrl, log })
    } catch (error) {
      throw new ConfigError(`DATABASE_URL: the migrations failed (${(error as Error).message})`, { cause: error })
    }
    if (config.tenantsFile !== '') log.warn({ file: config.tenantsFile }, 'DATABASE_URL is set: the tenants come from PostgreSQL and TENANTS_FILE is not read (seed the database once with `npm run tenants -- import <file>`)')
  }
  if (config.evolinkApiKey !== '') {
    // Database mode: buildApp loads the tenants from PostgreSQL.
    const tenantsFile = databaseMode ? null : requireTenantsFile(config)
    requireGatewaySecrets(config)
    if (config.publicBaseUrl !== '' && !config.publicBaseUrl.startsWith('https://')) throw new ConfigError('PUBLIC_BASE_URL must be https:// with EVOLINK_API_KEY: Evolink refuses other callback URLs')
    const tenants = tenantsFile === null ? null : readTenantsFile(tenantsFile)
    return { config, tenants, mode: 'evolink', demoTenantKey: null, demoTenantId: null, demoWebhookSecret: null, close: async () => {} }
  }

  const simulatorKey = 'sk-evo-sim-' + randomBytes(16).toString('hex')
  // The simulator calls the gateway back on loopback, which the real upstream would refuse.
  const simulator = await startSimulator({ apiKey: simulatorKey, taskDurationMs: config.simulatorTaskDurationMs, host: '127.0.0.1', port: 0, allowPrivateCallbackUrls: true })
  log.warn({ simulator: simulator.url }, 'EVOLINK_API_KEY is not set: SIMULATOR MODE, no real videos are made. Set EVOLINK_API_KEY to use Evolink.')

  let tenants: TenantDefinition[] | null
  let demoTenantKey: string | null = null
  let demoWebhookSecret: string | null = null
  if (databaseMode) {
    // The tenants are the database's (buildApp loads them): no demo tenant is invented there.
    tenants = null
  } else if (config.tenantsFile !== '') {
    tenants = readTenantsFile(config.tenantsFile)
  } else {
    demoTenantKey = generateTenantKey()
    demoWebhookSecret = generateWebhookSecret()
    tenants = [{ id: 'demo', keys: [tenantKeyHash(demoTenantKey)], rateLimit: { max: 60, timeWindow: 60_000 }, webhookSecrets: [demoWebhookSecret] }]
  }
  return {
    config: {
      ...config,
      evolinkApiKey: simulatorKey,
      evolinkBaseUrl: simulator.url,
      // The simulator serves the files API too (on its one origin); `off` stays off.
      evolinkFilesUrl: config.evolinkFilesUrl === 'off' ? 'off' : simulator.url,
      // Simulated tasks die with the process, so ids that die with it too are fine.
      gatewaySecret: config.gatewaySecret === '' ? randomBytes(32).toString('base64url') : config.gatewaySecret,
      // So that callback_url works end to end: the simulator calls the gateway on loopback,
      // and the gateway may deliver to a receiver on this machine.
      publicBaseUrl: config.publicBaseUrl === '' ? loopbackBaseUrl(config) : config.publicBaseUrl,
      webhookAllowedDestinations: config.webhookAllowedDestinations === '' ? '127.0.0.0/8,::1/128' : config.webhookAllowedDestinations,
      // The whole loop offline: finished videos are archived on disk, from the simulator on loopback.
      archiveDir: config.archiveDir === '' && config.archiveS3Bucket === '' ? join(tmpdir(), 'video-gateway-archive') : config.archiveDir,
      archiveAllowedSources: config.archiveAllowedSources === '' ? '127.0.0.0/8,::1/128' : config.archiveAllowedSources
    },
    tenants,
    mode: 'simulator',
    demoTenantKey,
    demoTenantId: demoTenantKey === null ? null : 'demo',
    demoWebhookSecret,
    close: simulator.close
  }
}
