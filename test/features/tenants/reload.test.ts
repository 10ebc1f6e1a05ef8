import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { buildTestApp, logCollector, makeTenant, type TestTenant } from '../../helpers/gateway.ts'
import { assertErrorResponse } from '../../helpers/assert-error.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'

async function tenantsDir (t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'vg-tenants-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  return dir
}

/** Writes the file the way editors and ConfigMaps do: a temp file renamed over it. */
async function replaceFile (path: string, tenants: readonly TestTenant[] | string): Promise<void> {
  const text = typeof tenants === 'string' ? tenants : JSON.stringify({ tenants: tenants.map((tenant) => tenant.definition) })
  await writeFile(`${path}.tmp`, text)
  await rename(`${path}.tmp`, path)
}

/** A gateway started from the tenants in `path` (as buildApp reads TENANTS_FILE), reloading from it. */
async function appOnFile (t: Test, path: string, initial: readonly TestTenant[], options: { watch?: boolean } = {}): Promise<{ app: FastifyInstance, lines: Array<Record<string, unknown>> }> {
  const simulator = await startTestSimulator(t)
  const logs = logCollector()
  const app = await buildTestApp(t, {
    upstreamUrl: simulator.url,
    upstreamKey: TEST_UPSTREAM_KEY,
    tenants: initial,
    config: { tenantsFile: path },
    logger: { level: 'debug', stream: logs.stream },
    tenantsFile: path,
    watchTenantsFile: options.watch ?? false
  })
  return { app, lines: logs.lines }
}

const usage = async (app: FastifyInstance, tenant: TestTenant): Promise<{ statusCode: number, headers: Record<string, unknown>, body: string }> =>
  await app.inject({ method: 'GET', url: '/v1/usage', headers: { authorization: tenant.authorization } })

async function reloadMetric (app: FastifyInstance, outcome: string): Promise<number> {
  const metric = await app.metrics.registry.getSingleMetric('vg_tenants_reloads_total')?.get()
  return metric?.values.find((value) => value.labels.outcome === outcome)?.value ?? 0
}

t.test('a reload takes a good file: the new key works, a removed key is 401 at once', async (t) => {
  const dir = await tenantsDir(t)
  const path = join(dir, 'tenants.json')
  const acme = makeTenant('acme')
  const beta = makeTenant('beta')
  await replaceFile(path, [acme])
  const { app } = await appOnFile(t, path, [acme])
  t.equal((await usage(app, acme)).statusCode, 200)
  t.equal((await usage(app, beta)).statusCode, 401)

  await replaceFile(path, [beta])
  t.equal(await app.tenantRegistry.reload(), 'ok')
  t.equal((await usage(app, beta)).statusCode, 200, 'the new tenant is served')
  assertErrorResponse(t, await usage(app, acme), { status: 401, code: 'unauthorized', type: 'authentication_error', message: 'Missing or invalid API key. Send `Authorization: Bearer <tenant key>`.' })
  t.equal(await app.tenantRegistry.reload(), 'unchanged', 'the same content is not applied twice')
  t.equal(await reloadMetric(app, 'ok'), 1)
})

t.test('a bad file is kept out: the running tenants stay, the log names the field, the metric counts it', async (t) => {
  const dir = await tenantsDir(t)
  const path = join(dir, 'tenants.json')
  const acme = makeTenant('acme')
  await replaceFile(path, [acme])
  const { app, lines } = await appOnFile(t, path, [acme])
  await replaceFile(path, JSON.stringify({ tenants: [{ ...acme.definition, maxN: 'three' }] }))
  t.equal(await app.tenantRegistry.reload(), 'failed')
  t.equal((await usage(app, acme)).statusCode, 200, 'the tenant still works')
  const line = lines.find((entry) => entry.msg !== undefined && String(entry.msg).startsWith('tenants reload failed'))
  t.equal(line?.level, 50, 'logged at error level')
  t.match(String(line?.msg), /tenants\[0\]\.maxN/, 'naming the field')
  await replaceFile(path, '{ not json')
  t.equal(await app.tenantRegistry.reload(), 'failed')
  t.equal(await reloadMetric(app, 'failed'), 2)
  t.equal((await usage(app, acme)).statusCode, 200)
})

t.test('a watched file is reloaded after a rename-style replace, without any signal', async (t) => {
  const dir = await tenantsDir(t)
  const path = join(dir, 'tenants.json')
  const acme = makeTenant('acme')
  const beta = makeTenant('beta')
  await replaceFile(path, [acme])
  const { app } = await appOnFile(t, path, [acme], { watch: true })
  await replaceFile(path, [acme, beta])
  for (let i = 0; i < 100 && (await usage(app, beta)).statusCode !== 200; i++) await sleep(50)
  t.equal((await usage(app, beta)).statusCode, 200, 'picked up from the directory watch')
  t.equal((await usage(app, acme)).statusCode, 200)
})

t.test('without a tenants file a reload does nothing', async (t) => {
  const simulator = await startTestSimulator(t)
  const acme = makeTenant('acme')
  const app = await buildTestApp(t, { upstreamUrl: simulator.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [acme] })
  t.equal(await app.tenantRegistry.reload(), 'no-file')
  t.equal((await usage(app, acme)).statusCode, 200)
})
