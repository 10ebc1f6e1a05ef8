import t from 'tap'
import { buildTestApp, makeTenant } from '../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../helpers/simulator.ts'

t.test('health and readiness need no key', async (t) => {
  const upstream = await startTestSimulator(t)
  const app = await buildTestApp(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [makeTenant('acme')] })
  const health = await app.inject({ method: 'GET', url: '/healthz' })
  t.equal(health.statusCode, 200)
  t.same(health.json(), { status: 'ok' })
  const ready = await app.inject({ method: 'GET', url: '/readyz' })
  t.same(ready.json(), { status: 'ok', checks: { config: 'ok', store: 'memory', upstream: 'closed' } })
})
