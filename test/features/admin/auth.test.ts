import t from 'tap'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'
import { adminAuthorization, buildDatabaseTestApp, eventually, migratedDatabase, testAdminToken, testAdminTokenHash } from '../../helpers/database.ts'
import { assertErrorResponse } from '../../helpers/assert-error.ts'
import { buildTestApp, makeTenant } from '../../helpers/gateway.ts'
import { tenantKeyHash } from '../../../src/features/tenants/registry.ts'
import { startAdminListener } from '../../../src/features/admin/listener.ts'

const unauthorized = {
  status: 401,
  code: 'admin_unauthorized',
  type: 'authentication_error',
  message: 'Missing or invalid admin token. Send `Authorization: Bearer <admin token>` (one whose hash ADMIN_TOKENS lists).'
}
const forbidden = {
  status: 403,
  code: 'admin_forbidden',
  type: 'permission_error',
  message: 'The admin API does not take tenant keys or browser tokens: send an admin token.',
  param: 'authorization'
}

t.test('admin routes take admin tokens only: none, a wrong one, a tenant key, a browser token are refused in the format', async (t) => {
  const databaseUrl = await migratedDatabase(t)
  if (databaseUrl === null) return
  const upstream = await startTestSimulator(t)
  const otherToken = 'vga_second_admin_token_abcdefghijklmnopqrstuvwxyz'
  const app = await buildDatabaseTestApp(t, { databaseUrl, upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, config: { adminTokens: `${testAdminTokenHash},${tenantKeyHash(otherToken)}` } })
  const create = await app.inject({ method: 'POST', url: '/admin/v1/tenants', headers: { authorization: adminAuthorization }, payload: { id: 'acme' } })
  t.equal(create.statusCode, 201)
  const key = (await app.inject({ method: 'POST', url: '/admin/v1/tenants/acme/keys', headers: { authorization: `Bearer ${otherToken}` }, payload: {} })).json().key as string
  t.ok((await eventually(async () => (await app.inject({ method: 'GET', url: '/v1/videos', headers: { authorization: `Bearer ${key}` } })).statusCode === 200, 1000)).ok, 'the tenant key works on /v1')
  const token = await app.inject({ method: 'POST', url: '/v1/tokens', headers: { authorization: `Bearer ${key}` }, payload: {} })
  t.equal(token.statusCode, 200)
  const browserToken = token.json().token as string

  for (const [method, url] of [['GET', '/admin/v1/tenants'], ['POST', '/admin/v1/tenants'], ['DELETE', '/admin/v1/tenants/acme'], ['GET', '/admin/v1/audit'], ['POST', '/admin/v1/tenants/acme/keys/key_abc/revoke']] as const) {
    const none = await app.inject({ method, url, payload: method === 'GET' ? undefined : {} })
    assertErrorResponse(t, none, unauthorized)
    t.equal(none.headers['www-authenticate'], 'Bearer realm="video-gateway-admin"')
    assertErrorResponse(t, await app.inject({ method, url, headers: { authorization: 'Bearer vga_not_an_admin_token' } }), unauthorized)
    assertErrorResponse(t, await app.inject({ method, url, headers: { authorization: `Basic ${Buffer.from(`admin:${testAdminToken}`).toString('base64')}` } }), unauthorized)
    assertErrorResponse(t, await app.inject({ method, url, headers: { authorization: `Bearer ${key}` } }), forbidden)
    assertErrorResponse(t, await app.inject({ method, url, headers: { authorization: `Bearer ${browserToken}` } }), forbidden)
  }
  // A forged JWT-shaped string is no token of ours: 401, not 403.
  assertErrorResponse(t, await app.inject({ method: 'GET', url: '/admin/v1/tenants', headers: { authorization: `Bearer ${browserToken.slice(0, -4)}AAAA` } }), unauthorized)
  // And the admin token is no tenant key.
  const onV1 = await app.inject({ method: 'GET', url: '/v1/videos', headers: { authorization: adminAuthorization } })
  t.equal(onV1.statusCode, 401)
  t.equal(onV1.json().error.code, 'unauthorized')

  const audit = (await app.inject({ method: 'GET', url: '/admin/v1/audit', headers: { authorization: adminAuthorization } })).json()
  t.same(audit.data.map((entry: { action: string, actor: string }) => [entry.action, entry.actor]), [
    ['key.create', `sha256:${tenantKeyHash(otherToken).slice(7, 15)}`],
    ['tenant.create', `sha256:${testAdminTokenHash.slice(7, 15)}`]
  ], 'each change names the admin token that made it; no refused request wrote anything')
  t.equal((await app.inject({ method: 'GET', url: '/admin/v1/tenants/acme', headers: { authorization: adminAuthorization } })).statusCode, 200, 'the tenant was not deleted by any refused request')
})

t.test('with ADMIN_TOKENS empty every admin request is refused', async (t) => {
  const databaseUrl = await migratedDatabase(t)
  if (databaseUrl === null) return
  const upstream = await startTestSimulator(t)
  const app = await buildDatabaseTestApp(t, { databaseUrl, upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, config: { adminTokens: '' } })
  assertErrorResponse(t, await app.inject({ method: 'GET', url: '/admin/v1/tenants', headers: { authorization: adminAuthorization } }), unauthorized)
})

t.test('unauthenticated admin attempts count against the per-IP limit', async (t) => {
  const databaseUrl = await migratedDatabase(t)
  if (databaseUrl === null) return
  const upstream = await startTestSimulator(t)
  const app = await buildDatabaseTestApp(t, { databaseUrl, upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, config: { unauthenticatedRateLimitMax: 2 } })
  for (let i = 0; i < 2; i++) t.equal((await app.inject({ method: 'GET', url: '/admin/v1/tenants', headers: { authorization: 'Bearer guess' } })).statusCode, 401)
  const limited = await app.inject({ method: 'GET', url: '/admin/v1/tenants', headers: { authorization: 'Bearer guess' } })
  t.equal(limited.statusCode, 429)
  t.equal(limited.json().error.code, 'rate_limit_exceeded')
})

t.test('file mode: an admin token gets 409 database_mode_required; no token still 401 first', async (t) => {
  const upstream = await startTestSimulator(t)
  const tenant = makeTenant('acme')
  const app = await buildTestApp(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [tenant], config: { adminTokens: testAdminTokenHash } })
  assertErrorResponse(t, await app.inject({ method: 'GET', url: '/admin/v1/tenants', headers: { authorization: adminAuthorization } }), {
    status: 409,
    code: 'database_mode_required',
    type: 'invalid_request_error',
    message: 'The tenants come from TENANTS_FILE (file mode): edit the file instead. The admin API changes tenants in database mode (DATABASE_URL).'
  })
  assertErrorResponse(t, await app.inject({ method: 'POST', url: '/admin/v1/tenants', payload: { id: 'x' } }), unauthorized)
  assertErrorResponse(t, await app.inject({ method: 'GET', url: '/admin/v1/tenants', headers: { authorization: tenant.authorization } }), forbidden)
})

t.test('ADMIN_PORT: the admin API on its own listener only, and nothing else there', async (t) => {
  const databaseUrl = await migratedDatabase(t)
  if (databaseUrl === null) return
  const upstream = await startTestSimulator(t)
  // Any non-zero port: the test starts the listener itself on port 0 (server.ts passes ADMIN_PORT).
  const app = await buildDatabaseTestApp(t, { databaseUrl, upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, config: { adminPort: 65000 } })
  const main = await app.listen({ host: '127.0.0.1', port: 0 })
  const adminListener = await startAdminListener({ app, host: '127.0.0.1', port: 0 })
  t.teardown(adminListener.close)
  const headers = { authorization: adminAuthorization }

  const onAdmin = await fetch(`${adminListener.url}/admin/v1/tenants`, { headers })
  t.equal(onAdmin.status, 200)
  t.same(await onAdmin.json(), { object: 'list', data: [], first_id: null, last_id: null, has_more: false })

  for (const [base, path] of [[main, '/admin/v1/tenants'], [adminListener.url, '/v1/videos'], [adminListener.url, '/healthz']] as const) {
    const response = await fetch(`${base}${path}`, { headers })
    const body = await response.json()
    t.equal(response.status, 404, `${base === main ? 'main' : 'admin'} port: ${path} is 404`)
    t.same(body, { error: { code: 'not_found', type: 'invalid_request_error', message: `No route GET ${path}.`, request_id: response.headers.get('x-request-id') } })
  }
  t.equal((await fetch(`${main}/healthz`)).status, 200, 'the main port serves the rest')
})

t.test('/openapi.json documents every admin route under the admin tag, with the admin token scheme', async (t) => {
  const upstream = await startTestSimulator(t)
  const app = await buildTestApp(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [makeTenant('acme')] })
  const document = (await app.inject({ method: 'GET', url: '/openapi.json' })).json()
  const operations = Object.entries(document.paths as Record<string, Record<string, { tags?: string[], security?: unknown, operationId?: string }>>)
    .filter(([path]) => path.startsWith('/admin/v1'))
    .flatMap(([path, methods]) => Object.entries(methods).map(([method, operation]) => ({ path, method, operation })))
  t.same(operations.map(({ method, path }) => `${method.toUpperCase()} ${path}`).sort(), [
    'DELETE /admin/v1/tenants/{tenant_id}',
    'GET /admin/v1/audit',
    'GET /admin/v1/tenants',
    'GET /admin/v1/tenants/{tenant_id}',
    'GET /admin/v1/tenants/{tenant_id}/keys',
    'PATCH /admin/v1/tenants/{tenant_id}/keys/{key_id}',
    'POST /admin/v1/tenants',
    'POST /admin/v1/tenants/{tenant_id}/disable',
    'POST /admin/v1/tenants/{tenant_id}/enable',
    'POST /admin/v1/tenants/{tenant_id}/keys',
    'POST /admin/v1/tenants/{tenant_id}/keys/{key_id}/revoke',
    'PUT /admin/v1/tenants/{tenant_id}'
  ])
  for (const { operation } of operations) {
    t.same(operation.tags, ['admin'], `${operation.operationId ?? ''}: tag admin`)
    t.same(operation.security, [{ adminToken: [] }])
  }
  t.match(document.components.securitySchemes.adminToken, { type: 'http', scheme: 'bearer' })
  t.ok((document.tags as Array<{ name: string }>).some((tag) => tag.name === 'admin'))
})
