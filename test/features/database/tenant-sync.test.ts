import t from 'tap'
import pg from 'pg'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'
import { adminAuthorization, buildDatabaseTestApp, eventually, migratedDatabase } from '../../helpers/database.ts'
import { logCollector, validBody, type HasTeardown } from '../../helpers/gateway.ts'
import type { Config } from '../../../src/config.ts'

/** Within this, every replica refuses a revoked key (issue 16): polled, never slept for. */
const propagationMs = 1000

async function startPair (t: HasTeardown, databaseUrl: string, config: Partial<Config> = {}) {
  const upstream = await startTestSimulator(t)
  const gateways = []
  for (let i = 0; i < 2; i++) {
    const app = await buildDatabaseTestApp(t, { databaseUrl, upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, config })
    const url = await app.listen({ host: '127.0.0.1', port: 0 })
    gateways.push({ app, url })
  }
  return gateways as [typeof gateways[0], typeof gateways[0]]
}

async function admin (base: string, method: string, path: string, body?: unknown): Promise<{ status: number, body: any }> {
  const response = await fetch(`${base}/admin/v1${path}`, {
    method,
    headers: { authorization: adminAuthorization, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })
  return { status: response.status, body: await response.json() }
}

async function statusWithKey (base: string, key: string): Promise<number> {
  const response = await fetch(`${base}/v1/videos`, { headers: { authorization: `Bearer ${key}` } })
  await response.arrayBuffer()
  return response.status
}

t.test('two gateways on one database: a key made on A works on B; revoked on A, B refuses it within 1 s', async (t) => {
  const databaseUrl = await migratedDatabase(t)
  if (databaseUrl === null) return
  const [a, b] = await startPair(t, databaseUrl)

  t.equal((await admin(a.url, 'POST', '/tenants', { id: 'acme' })).status, 201)
  const created = await admin(a.url, 'POST', '/tenants/acme/keys', { label: 'first' })
  t.equal(created.status, 201)
  const key = created.body.key as string

  const works = await eventually(async () => await statusWithKey(b.url, key) === 200, propagationMs)
  t.ok(works.ok, `the new key works on B (after ${Math.round(works.afterMs)} ms)`)
  t.equal(await statusWithKey(a.url, key), 200, 'and on A')

  // A second live key (rotation): both work until the old one is revoked.
  const second = await admin(a.url, 'POST', '/tenants/acme/keys', { label: 'second' })
  t.ok((await eventually(async () => await statusWithKey(b.url, second.body.key) === 200, propagationMs)).ok, 'the second key works on B')
  t.equal(await statusWithKey(b.url, key), 200, 'the first one still does')

  t.equal((await admin(a.url, 'POST', `/tenants/acme/keys/${created.body.id as string}/revoke`)).status, 200)
  const refused = await eventually(async () => await statusWithKey(b.url, key) === 401, propagationMs)
  t.ok(refused.ok, `B refuses the revoked key within ${propagationMs} ms (after ${Math.round(refused.afterMs)} ms)`)
  t.equal(await statusWithKey(a.url, key), 401, 'A too')
  t.equal(await statusWithKey(b.url, second.body.key), 200, 'the other key keeps working')

  // Settings too: a model cap set on A is enforced by B.
  t.equal((await admin(a.url, 'PUT', '/tenants/acme', { allowedModels: ['some-other-model'] })).status, 200)
  const capped = await eventually(async () => {
    const response = await fetch(`${b.url}/v1/videos/generations`, { method: 'POST', headers: { authorization: `Bearer ${second.body.key as string}`, 'content-type': 'application/json' }, body: JSON.stringify(validBody) })
    await response.arrayBuffer()
    return response.status === 403
  }, propagationMs)
  t.ok(capped.ok, 'B enforces the new allowedModels')

  t.equal((await admin(a.url, 'POST', '/tenants/acme/disable')).status, 200)
  t.ok((await eventually(async () => await statusWithKey(b.url, second.body.key) === 401, propagationMs)).ok, 'a disabled tenant\'s keys are refused on B')
  t.equal((await admin(a.url, 'POST', '/tenants/acme/enable')).status, 200)
  t.ok((await eventually(async () => await statusWithKey(b.url, second.body.key) === 200, propagationMs)).ok, 'and work again once it is enabled')

  t.equal((await admin(b.url, 'DELETE', '/tenants/acme')).status, 200)
  t.ok((await eventually(async () => await statusWithKey(a.url, second.body.key) === 401, propagationMs)).ok, 'a deleted tenant (deleted on B) is gone on A')
})

t.test('key expiry: the registry drops a key at its expiry, without a query (its own clock)', async (t) => {
  const databaseUrl = await migratedDatabase(t)
  if (databaseUrl === null) return
  const upstream = await startTestSimulator(t)
  let clock = Date.now()
  const app = await buildDatabaseTestApp(t, { databaseUrl, upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, seams: { clock: () => clock } })
  const auth = { authorization: adminAuthorization }
  await app.inject({ method: 'POST', url: '/admin/v1/tenants', headers: auth, payload: { id: 'acme' } })
  const inAnHour = new Date(clock + 3600_000).toISOString()
  const created = await app.inject({ method: 'POST', url: '/admin/v1/tenants/acme/keys', headers: auth, payload: { expires_at: inAnHour } })
  t.equal(created.statusCode, 201)
  t.equal(created.json().expires_at, inAnHour)
  const key = created.json().key as string
  const status = async (): Promise<number> => (await app.inject({ method: 'GET', url: '/v1/videos', headers: { authorization: `Bearer ${key}` } })).statusCode
  t.ok((await eventually(async () => await status() === 200, propagationMs)).ok, 'works before its expiry')

  clock += 3600_000 + 1
  // What the expiry timer does at that time (it waits in real time; the clock was moved).
  await app.tenantSync!.refresh()
  t.equal(await status(), 401, 'refused once expired')
  const listed = await app.inject({ method: 'GET', url: '/admin/v1/tenants/acme/keys', headers: auth })
  t.equal(listed.json().data[0].status, 'expired')
  t.equal((await app.inject({ method: 'GET', url: '/admin/v1/tenants/acme', headers: auth })).json().live_keys, 0)
})

t.test('key expiry in real time: the timer drops the key without a refresh or a notification', async (t) => {
  const databaseUrl = await migratedDatabase(t)
  if (databaseUrl === null) return
  const upstream = await startTestSimulator(t)
  const app = await buildDatabaseTestApp(t, { databaseUrl, upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY })
  const auth = { authorization: adminAuthorization }
  await app.inject({ method: 'POST', url: '/admin/v1/tenants', headers: auth, payload: { id: 'acme' } })
  const created = await app.inject({ method: 'POST', url: '/admin/v1/tenants/acme/keys', headers: auth, payload: { expires_at: new Date(Date.now() + 1500).toISOString() } })
  const key = created.json().key as string
  const status = async (): Promise<number> => (await app.inject({ method: 'GET', url: '/v1/videos', headers: { authorization: `Bearer ${key}` } })).statusCode
  t.ok((await eventually(async () => await status() === 200, propagationMs)).ok, 'works first')
  t.ok((await eventually(async () => await status() === 401, 5000)).ok, 'refused after its expiry')
})

t.test('last used: recorded off the request path, written in one batch', async (t) => {
  const databaseUrl = await migratedDatabase(t)
  if (databaseUrl === null) return
  const upstream = await startTestSimulator(t)
  const app = await buildDatabaseTestApp(t, { databaseUrl, upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY })
  const auth = { authorization: adminAuthorization }
  await app.inject({ method: 'POST', url: '/admin/v1/tenants', headers: auth, payload: { id: 'acme' } })
  const used = (await app.inject({ method: 'POST', url: '/admin/v1/tenants/acme/keys', headers: auth, payload: { label: 'used' } })).json()
  const unused = (await app.inject({ method: 'POST', url: '/admin/v1/tenants/acme/keys', headers: auth, payload: { label: 'unused' } })).json()
  t.ok((await eventually(async () => (await app.inject({ method: 'GET', url: '/v1/videos', headers: { authorization: `Bearer ${used.key as string}` } })).statusCode === 200, propagationMs)).ok)
  const lastUsed = async (): Promise<Record<string, string | null>> => Object.fromEntries(
    (await app.inject({ method: 'GET', url: '/admin/v1/tenants/acme/keys', headers: auth })).json().data.map((key: { label: string, last_used_at: string | null }) => [key.label, key.last_used_at])
  )
  t.same(await lastUsed(), { used: null, unused: null }, 'nothing written on the request path')
  const before = Date.now()
  await app.tenantSync!.flushKeyUsage()
  const after = await lastUsed()
  t.equal(after.unused, null)
  t.ok(typeof after.used === 'string' && Date.parse(after.used) >= before - 1000, `the used key's last use: ${String(after.used)}`)
  t.not(unused.id, used.id)
})

t.test('a change that no notification carried (triggers off) arrives with the periodic refresh', async (t) => {
  const databaseUrl = await migratedDatabase(t)
  if (databaseUrl === null) return
  const upstream = await startTestSimulator(t)
  const app = await buildDatabaseTestApp(t, { databaseUrl, upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, config: { databaseRefreshMs: 1000 } })
  const auth = { authorization: adminAuthorization }
  await app.inject({ method: 'POST', url: '/admin/v1/tenants', headers: auth, payload: { id: 'acme' } })
  const key = (await app.inject({ method: 'POST', url: '/admin/v1/tenants/acme/keys', headers: auth, payload: {} })).json().key as string
  const status = async (): Promise<number> => (await app.inject({ method: 'GET', url: '/v1/videos', headers: { authorization: `Bearer ${key}` } })).statusCode
  t.ok((await eventually(async () => await status() === 200, propagationMs)).ok)

  const client = new pg.Client({ connectionString: databaseUrl })
  await client.connect()
  t.teardown(async () => { await client.end() })
  // session_replication_role=replica: no trigger fires, so no NOTIFY (a lost notification, in effect).
  await client.query('SET session_replication_role = replica')
  await client.query("UPDATE tenant_keys SET revoked_at = now() WHERE tenant_id = 'acme'")
  t.equal(await status(), 200, 'not heard of yet')
  t.ok((await eventually(async () => await status() === 401, 5000)).ok, 'refused after the next full refresh')
})

t.test('a tenant row edited by hand into something invalid is left out (named in the log); the others are served', async (t) => {
  const databaseUrl = await migratedDatabase(t)
  if (databaseUrl === null) return
  const upstream = await startTestSimulator(t)
  const logs = logCollector()
  const app = await buildDatabaseTestApp(t, { databaseUrl, upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, logger: { level: 'info', stream: logs.stream } })
  const auth = { authorization: adminAuthorization }
  const keys: Record<string, string> = {}
  for (const id of ['good', 'bad']) {
    await app.inject({ method: 'POST', url: '/admin/v1/tenants', headers: auth, payload: { id } })
    keys[id] = (await app.inject({ method: 'POST', url: `/admin/v1/tenants/${id}/keys`, headers: auth, payload: {} })).json().key as string
  }
  const status = async (id: string): Promise<number> => (await app.inject({ method: 'GET', url: '/v1/videos', headers: { authorization: `Bearer ${keys[id] as string}` } })).statusCode
  t.ok((await eventually(async () => await status('good') === 200 && await status('bad') === 200, propagationMs)).ok)

  const client = new pg.Client({ connectionString: databaseUrl })
  await client.connect()
  t.teardown(async () => { await client.end() })
  await client.query('UPDATE tenants SET settings = $1 WHERE id = $2', [JSON.stringify({ rateLimit: { max: 'lots', timeWindow: 1000 } }), 'bad'])
  t.ok((await eventually(async () => await status('bad') === 401, propagationMs)).ok, 'the invalid tenant is not served')
  t.equal(await status('good'), 200, 'the other one is')
  const line = logs.lines.find((entry) => entry.tenant === 'bad' && entry.level === 50)
  t.match(line?.msg, /^tenant "bad" in the database is invalid and is not served: /)
})

t.test('a change made while the listener was cut off is loaded when it reconnects', async (t) => {
  const databaseUrl = await migratedDatabase(t)
  if (databaseUrl === null) return
  const upstream = await startTestSimulator(t)
  const app = await buildDatabaseTestApp(t, { databaseUrl, upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY })
  const auth = { authorization: adminAuthorization }
  await app.inject({ method: 'POST', url: '/admin/v1/tenants', headers: auth, payload: { id: 'acme' } })
  const key = (await app.inject({ method: 'POST', url: '/admin/v1/tenants/acme/keys', headers: auth, payload: {} })).json().key as string
  const status = async (): Promise<number> => (await app.inject({ method: 'GET', url: '/v1/videos', headers: { authorization: `Bearer ${key}` } })).statusCode
  t.ok((await eventually(async () => await status() === 200, propagationMs)).ok)

  const client = new pg.Client({ connectionString: databaseUrl })
  await client.connect()
  t.teardown(async () => { await client.end() })
  // Cut the listener's connection, and in the same transaction revoke: its notification is sent to nobody.
  await client.query('BEGIN')
  const cut = await client.query("SELECT pg_terminate_backend(pid) AS cut FROM pg_stat_activity WHERE application_name = 'video-gateway-listener' AND datname = current_database()")
  t.same(cut.rows, [{ cut: true }], 'the listener was cut')
  await client.query("UPDATE tenant_keys SET revoked_at = now() WHERE tenant_id = 'acme'")
  await client.query('COMMIT')
  t.ok((await eventually(async () => await status() === 401, 5000)).ok, 'refused once the listener is back (its reload after reconnecting)')
  t.ok((await eventually(async () => app.tenantSync?.listening === true, 5000)).ok, 'listening again')
})
