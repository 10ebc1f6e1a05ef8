import t from 'tap'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'
import { adminAuthorization, buildDatabaseTestApp, eventually, silentLog } from '../../helpers/database.ts'
import { ownPostgresServer } from '../../helpers/postgres-server.ts'
import { runMigrations } from '../../../src/features/database/migrate.ts'

t.test('PostgreSQL stopped mid-traffic: the gateway keeps serving its tenants, says degraded, and resumes changes when it is back', async (t) => {
  const postgres = await ownPostgresServer(t)
  if ('skip' in postgres) { t.comment(postgres.skip); return }
  await runMigrations({ databaseUrl: postgres.url, log: silentLog })
  const upstream = await startTestSimulator(t)
  const app = await buildDatabaseTestApp(t, { databaseUrl: postgres.url, upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY })
  const base = await app.listen({ host: '127.0.0.1', port: 0 })
  const admin = async (method: string, path: string, body?: unknown): Promise<{ status: number, body: any }> => {
    const response = await fetch(`${base}/admin/v1${path}`, {
      method,
      headers: { authorization: adminAuthorization, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) })
    })
    return { status: response.status, body: await response.json() }
  }
  const readiness = async (): Promise<unknown> => await (await fetch(`${base}/readyz`)).json()
  const statusWith = async (key: string): Promise<number> => {
    const response = await fetch(`${base}/v1/videos`, { headers: { authorization: `Bearer ${key}` } })
    await response.arrayBuffer()
    return response.status
  }

  t.equal((await admin('POST', '/tenants', { id: 'acme' })).status, 201)
  const first = await admin('POST', '/tenants/acme/keys', { label: 'first' })
  const second = await admin('POST', '/tenants/acme/keys', { label: 'second' })
  const key = first.body.key as string
  t.ok((await eventually(async () => await statusWith(key) === 200 && await statusWith(second.body.key) === 200, 1000)).ok, 'both keys work')
  t.same(await readiness(), { status: 'ok', checks: { config: 'ok', store: 'memory', upstream: 'closed', database: 'ok' } })

  // Traffic all along: bounded in time (at most 60 s) and stopped by the test.
  const statuses = new Map<number, number>()
  const traffic = { on: true }
  const trafficDeadline = performance.now() + 60_000
  const workers = Array.from({ length: 4 }, async () => {
    while (traffic.on && performance.now() < trafficDeadline) {
      const status = await statusWith(key)
      statuses.set(status, (statuses.get(status) ?? 0) + 1)
    }
  })
  const answered = (): number => [...statuses.values()].reduce((sum, n) => sum + n, 0)
  t.ok((await eventually(async () => answered() >= 20, 5000)).ok, 'traffic flows')

  await postgres.stop()
  const before = answered()
  const degraded = await eventually(async () => {
    const ready = await readiness() as { checks?: { database?: string } }
    return ready.checks?.database === 'degraded'
  }, 10_000)
  t.ok(degraded.ok, `/readyz says database: degraded (after ${Math.round(degraded.afterMs)} ms)`)
  t.same(await readiness(), { status: 'ok', checks: { config: 'ok', store: 'memory', upstream: 'closed', database: 'degraded' } }, 'still ready: every replica would say the same')
  t.ok((await eventually(async () => answered() >= before + 20, 5000)).ok, 'traffic goes on with the database down')
  const refusedChange = await admin('POST', '/tenants/acme/keys', { label: 'during' })
  t.equal(refusedChange.status, 503)
  t.match(refusedChange.body, { error: { code: 'database_unavailable', type: 'api_error', message: 'The database is unavailable; nothing was changed. Retry shortly.' } })
  t.same(Object.keys(refusedChange.body.error).sort(), ['code', 'message', 'request_id', 'type'])

  await postgres.start()
  const recovered = await eventually(async () => {
    const ready = await readiness() as { checks?: { database?: string } }
    return ready.checks?.database === 'ok' && app.tenantSync?.listening === true
  }, 10_000)
  t.ok(recovered.ok, `database: ok again, listening again (after ${Math.round(recovered.afterMs)} ms)`)

  // Changes resume: a revoke made now reaches the running registry through the new listener.
  t.equal((await admin('POST', `/tenants/acme/keys/${second.body.id as string}/revoke`)).status, 200)
  t.ok((await eventually(async () => await statusWith(second.body.key) === 401, 1000)).ok, 'a key revoked after the outage is refused within 1 s')

  traffic.on = false
  await Promise.all(workers)
  t.same([...statuses.keys()], [200], `every request of the traffic was answered 200 (${answered()} requests), none failed during the outage`)
})
