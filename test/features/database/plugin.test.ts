import t from 'tap'
import { buildTestApp, makeTenant } from '../../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'
import { postgresForTests } from '../../helpers/postgres.ts'
import { runMigrations } from '../../../src/features/database/migrate.ts'

t.test('file mode: no database, and /readyz says nothing of one', async (t) => {
  const upstream = await startTestSimulator(t)
  const app = await buildTestApp(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [makeTenant('acme')] })
  t.equal(app.database, null)
  const ready = await app.inject({ method: 'GET', url: '/readyz' })
  t.same(ready.json(), { status: 'ok', checks: { config: 'ok', store: 'memory', upstream: 'closed' } })
})

t.test('database mode: a pool, and /readyz shows `database: ok`', async (t) => {
  const database = await postgresForTests()
  if ('skip' in database) { t.comment(database.skip); return }
  t.teardown(database.cleanup)
  await runMigrations({ databaseUrl: database.url, log: { info () {}, warn () {}, error () {} } })
  const upstream = await startTestSimulator(t)
  const app = await buildTestApp(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [], config: { databaseUrl: database.url } })
  t.not(app.database, null)
  t.equal(app.database?.health(), 'ok')
  const { rows } = await app.database!.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM tenants')
  t.same(rows, [{ n: 0 }])
  const ready = await app.inject({ method: 'GET', url: '/readyz' })
  t.same(ready.json(), { status: 'ok', checks: { config: 'ok', store: 'memory', upstream: 'closed', database: 'ok' } })
})

t.test('database mode with a database that does not answer: buildApp fails and says which setting', async (t) => {
  const upstream = await startTestSimulator(t)
  // Port 1 on loopback: nothing listens there, the connection is refused at once.
  await t.rejects(buildTestApp(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [], config: { databaseUrl: 'postgres://postgres@127.0.0.1:1/none' } }), {
    message: /^DATABASE_URL: cannot connect to PostgreSQL \(connect ECONNREFUSED 127\.0\.0\.1:1\)$/
  })
})
