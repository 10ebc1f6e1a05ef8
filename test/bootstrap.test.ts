import t from 'tap'
import { pino } from 'pino'
import { prepareRuntime } from '../src/bootstrap.ts'
import { resolveConfig } from '../src/config.ts'
import { buildTenantRegistry } from '../src/features/tenants/registry.ts'

const silent = pino({ level: 'silent' })

t.test('simulator mode: callback_url works end to end on loopback by default', async (t) => {
  const runtime = await prepareRuntime(resolveConfig({ port: 18080, host: '0.0.0.0' }), silent)
  t.teardown(runtime.close)
  t.equal(runtime.mode, 'simulator')
  t.equal(runtime.config.publicBaseUrl, 'http://127.0.0.1:18080', 'the gateway\'s own loopback address')
  t.equal(runtime.config.webhookAllowedDestinations, '127.0.0.0/8,::1/128')
  t.match(runtime.demoWebhookSecret, /^whsec_[A-Za-z0-9+/]{43}=$/)
  t.same(buildTenantRegistry(runtime.tenants ?? []).tenants[0]!.webhookSecrets, [runtime.demoWebhookSecret])
})

t.test('simulator mode keeps what the operator set', async (t) => {
  const runtime = await prepareRuntime(resolveConfig({ publicBaseUrl: 'https://gw.example.com', webhookAllowedDestinations: '10.0.0.0/8' }), silent)
  t.teardown(runtime.close)
  t.equal(runtime.config.publicBaseUrl, 'https://gw.example.com')
  t.equal(runtime.config.webhookAllowedDestinations, '10.0.0.0/8')
})

t.test('simulator mode on port 0: no PUBLIC_BASE_URL (the port is not known yet)', async (t) => {
  const runtime = await prepareRuntime(resolveConfig({ port: 0 }), silent)
  t.teardown(runtime.close)
  t.equal(runtime.config.publicBaseUrl, '')
})

t.test('with a real upstream key nothing is changed', async (t) => {
  const dir = t.testdir({ 'tenants.json': JSON.stringify({ tenants: [] }) })
  const config = resolveConfig({ evolinkApiKey: 'sk-evo-real', tenantsFile: `${dir}/tenants.json`, gatewaySecret: 'x'.repeat(40) })
  const runtime = await prepareRuntime(config, silent)
  t.equal(runtime.config.publicBaseUrl, '')
  t.equal(runtime.demoWebhookSecret, null)
})

t.test('with a real upstream key PUBLIC_BASE_URL must be https (Evolink refuses other callback URLs)', async (t) => {
  const dir = t.testdir({ 'tenants.json': JSON.stringify({ tenants: [] }) })
  const config = resolveConfig({ evolinkApiKey: 'sk-evo-real', tenantsFile: `${dir}/tenants.json`, gatewaySecret: 'x'.repeat(40), publicBaseUrl: 'http://gw.example.com' })
  await t.rejects(prepareRuntime(config, silent), { name: 'ConfigError', message: 'PUBLIC_BASE_URL must be https:// with EVOLINK_API_KEY: Evolink refuses other callback URLs' })
  const https = await prepareRuntime({ ...config, publicBaseUrl: 'https://gw.example.com' }, silent)
  t.equal(https.config.publicBaseUrl, 'https://gw.example.com')
})
