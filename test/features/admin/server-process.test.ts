import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort, startServerProcess } from '../../helpers/server-process.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'
import { testGatewaySecret } from '../../helpers/gateway.ts'
import { eventually, testAdminToken, testAdminTokenHash } from '../../helpers/database.ts'
import { postgresForTests } from '../../helpers/postgres.ts'

t.test('two gateway processes started together on a fresh database: one migrates, both serve, the admin API on ADMIN_PORT', async (t) => {
  const database = await postgresForTests()
  if ('skip' in database) { t.comment(database.skip); return }
  t.teardown(database.cleanup)
  const upstream = await startTestSimulator(t)
  const replicas = []
  for (let i = 0; i < 2; i++) {
    const port = await freePort()
    const adminPort = await freePort()
    // A directory of each one's own (t.testdir is one per test): no .env, nothing else.
    const cwd = mkdtempSync(join(tmpdir(), 'vg-replica-'))
    t.teardown(() => { rmSync(cwd, { recursive: true, force: true }) })
    const server = startServerProcess(t, {
      PORT: String(port),
      ADMIN_PORT: String(adminPort),
      HOST: '127.0.0.1',
      EVOLINK_API_KEY: TEST_UPSTREAM_KEY,
      EVOLINK_BASE_URL: upstream.url,
      GATEWAY_SECRET: testGatewaySecret,
      DATABASE_URL: database.url,
      ADMIN_TOKENS: testAdminTokenHash,
      // Set, to show it is not read in database mode (it does not exist).
      TENANTS_FILE: 'no-such-tenants.json',
      LOG_LEVEL: 'info',
      SHUTDOWN_DRAIN_MS: '0'
    }, {}, { cwd })
    replicas.push({ server, base: `http://127.0.0.1:${port}`, admin: `http://127.0.0.1:${adminPort}/admin/v1` })
  }
  for (const { server } of replicas) await server.waitFor(/admin API served on its own port/)
  const migrated = replicas.filter(({ server }) => server.output().includes('### MIGRATION 1765100000000_tenants-keys-audit (UP) ###'))
  t.equal(migrated.length, 1, 'exactly one replica ran the migration; the other waited on the lock and found nothing to do')
  for (const { server } of replicas) {
    t.match(server.output(), /DATABASE_URL is set: the tenants come from PostgreSQL and TENANTS_FILE is not read/)
    t.match(server.output(), /tenants loaded from the database; listening to changes/)
  }
  const [a, b] = replicas as [typeof replicas[0], typeof replicas[0]]
  const headers = { authorization: `Bearer ${testAdminToken}`, 'content-type': 'application/json' }
  t.equal((await fetch(`${a.admin}/tenants`, { method: 'POST', headers, body: JSON.stringify({ id: 'acme' }) })).status, 201)
  const created = await (await fetch(`${a.admin}/tenants/acme/keys`, { method: 'POST', headers, body: '{}' })).json() as { key: string }
  const key = created.key
  const worksOnB = await eventually(async () => (await fetch(`${b.base}/v1/videos`, { headers: { authorization: `Bearer ${key}` } })).status === 200, 1000)
  t.ok(worksOnB.ok, 'a key made through A\'s admin port works on B')
  const onMain = await fetch(`${a.base}/admin/v1/tenants`, { headers })
  t.equal(onMain.status, 404, 'the main port does not serve the admin API')
  t.same(await (await fetch(`${b.base}/readyz`)).json(), { status: 'ok', checks: { config: 'ok', store: 'memory', upstream: 'closed', database: 'ok' } })
  for (const { server } of replicas) server.child.kill('SIGTERM')
  t.same(await Promise.all(replicas.map(async ({ server }) => await server.exited)), [0, 0], 'both shut down cleanly (the listener and the pool closed)')
})
