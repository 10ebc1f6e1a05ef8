import t from 'tap'
import type { FastifyInstance, InjectOptions } from 'fastify'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'
import { adminAuthorization, buildDatabaseTestApp, migratedDatabase, testAdminTokenHash } from '../../helpers/database.ts'
import { assertErrorResponse } from '../../helpers/assert-error.ts'
import { tenantKeyHash } from '../../../src/features/tenants/registry.ts'

const auth = { authorization: adminAuthorization }
const actor = `sha256:${testAdminTokenHash.slice('sha256:'.length, 'sha256:'.length + 8)}`
const isoDate = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/

async function databaseApp (t: Parameters<typeof migratedDatabase>[0]): Promise<FastifyInstance | null> {
  const databaseUrl = await migratedDatabase(t)
  if (databaseUrl === null) return null
  const upstream = await startTestSimulator(t)
  return await buildDatabaseTestApp(t, { databaseUrl, upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY })
}

function call (app: FastifyInstance, method: InjectOptions['method'], url: string, payload?: unknown) {
  return app.inject({ method, url: `/admin/v1${url}`, headers: auth, ...(payload === undefined ? {} : { payload: payload as InjectOptions['payload'] }) })
}

t.test('tenants: create, read, list (paginated), update, disable, enable, delete', async (t) => {
  const app = await databaseApp(t)
  if (app === null) return

  const settings = { rateLimit: { max: 5, timeWindow: '1 minute' }, allowedModels: ['veo-3.1-fast-generate-preview'], maxN: 2 }
  const created = await call(app, 'POST', '/tenants', { id: 'acme', ...settings })
  t.equal(created.statusCode, 201)
  const tenant = created.json()
  t.same(tenant, { object: 'tenant', id: 'acme', ...settings, disabled: false, live_keys: 0, created_at: tenant.created_at, updated_at: tenant.updated_at })
  t.match(tenant.created_at, isoDate)

  const read = await call(app, 'GET', '/tenants/acme')
  t.equal(read.statusCode, 200)
  t.same(read.json(), tenant)

  for (const id of ['beta', 'gamma', 'delta']) t.equal((await call(app, 'POST', '/tenants', { id, disabled: id === 'gamma' })).statusCode, 201)
  const page1 = await call(app, 'GET', '/tenants?limit=2')
  t.equal(page1.statusCode, 200)
  t.same(page1.json().data.map((row: { id: string }) => row.id), ['acme', 'beta'])
  t.same([page1.json().first_id, page1.json().last_id, page1.json().has_more], ['acme', 'beta', true])
  const page2 = await call(app, 'GET', `/tenants?limit=2&after=${page1.json().last_id as string}`)
  t.same(page2.json().data.map((row: { id: string, disabled: boolean }) => [row.id, row.disabled]), [['delta', false], ['gamma', true]])
  t.equal(page2.json().has_more, false)
  const page3 = await call(app, 'GET', '/tenants?after=gamma')
  t.same(page3.json(), { object: 'list', data: [], first_id: null, last_id: null, has_more: false })
  t.equal((await call(app, 'GET', '/tenants')).json().data.length, 4, 'default page size holds all four')

  // PUT replaces the settings whole: maxN, left out, is gone.
  const replaced = { rateLimit: { max: 10, timeWindow: 60000 }, budget: { creditsPerDay: 100 } }
  const updated = await call(app, 'PUT', '/tenants/acme', replaced)
  t.equal(updated.statusCode, 200)
  const { allowedModels: _models, maxN: _maxN, ...unchanged } = tenant
  t.same(updated.json(), { ...unchanged, ...replaced, updated_at: updated.json().updated_at })
  t.notOk('maxN' in updated.json() || 'allowedModels' in updated.json(), 'what was left out is gone')
  t.ok(Date.parse(updated.json().updated_at) >= Date.parse(tenant.updated_at))

  const disabled = await call(app, 'POST', '/tenants/acme/disable')
  t.equal(disabled.statusCode, 200)
  t.equal(disabled.json().disabled, true)
  t.same(disabled.json().budget, replaced.budget, 'settings untouched')
  const enabled = await call(app, 'POST', '/tenants/acme/enable')
  t.equal(enabled.json().disabled, false)

  const deleted = await call(app, 'DELETE', '/tenants/acme')
  t.equal(deleted.statusCode, 200)
  t.same(deleted.json(), { object: 'tenant.deleted', id: 'acme', deleted: true })
  assertErrorResponse(t, await call(app, 'GET', '/tenants/acme'), { status: 404, code: 'not_found', type: 'invalid_request_error', message: 'Tenant "acme" not found.', param: 'tenant_id' })
  assertErrorResponse(t, await call(app, 'DELETE', '/tenants/acme'), { status: 404, code: 'not_found', type: 'invalid_request_error', message: 'Tenant "acme" not found.', param: 'tenant_id' })
  for (const [method, url, payload] of [['PUT', '/tenants/acme', {}], ['POST', '/tenants/acme/disable', undefined], ['POST', '/tenants/acme/enable', undefined], ['GET', '/tenants/acme/keys', undefined], ['POST', '/tenants/acme/keys', {}]] as const) {
    assertErrorResponse(t, await call(app, method, url, payload), { status: 404, code: 'not_found', type: 'invalid_request_error', message: 'Tenant "acme" not found.', param: 'tenant_id' })
  }
})

t.test('tenants: every bad input is a 400 (or 409) in the one format, and nothing is written', async (t) => {
  const app = await databaseApp(t)
  if (app === null) return
  t.equal((await call(app, 'POST', '/tenants', { id: 'acme' })).statusCode, 201)
  const invalid = (message: string, param?: string) => ({ status: 400, code: 'invalid_request', type: 'invalid_request_error', message, ...(param === undefined ? {} : { param }) })

  assertErrorResponse(t, await call(app, 'POST', '/tenants', { id: 'acme' }), { status: 409, code: 'tenant_exists', type: 'invalid_request_error', message: 'Tenant "acme" already exists.', param: 'id' })
  assertErrorResponse(t, await call(app, 'POST', '/tenants', { id: 'b', rateLimt: { max: 1, timeWindow: 1000 } }), invalid('Unknown field "rateLimt": check its spelling.', 'rateLimt'))
  assertErrorResponse(t, await call(app, 'POST', '/tenants', { id: 'b', rateLimit: { max: 1, timeWindow: 1000, burst: 2 } }), invalid('Unknown field "burst" in "rateLimit": check its spelling.', 'rateLimit.burst'))
  assertErrorResponse(t, await call(app, 'POST', '/tenants', { id: 'b', keys: [tenantKeyHash('x')] }), invalid('Unknown field "keys": check its spelling.', 'keys'))
  assertErrorResponse(t, await call(app, 'POST', '/tenants', { id: 'b', maxN: '2' }), invalid('"maxN" must be integer.', 'maxN'))
  assertErrorResponse(t, await call(app, 'POST', '/tenants', { id: 'b', rateLimit: { max: -1, timeWindow: 1000 } }), invalid('"rateLimit.max" must be >= 0.', 'rateLimit.max'))
  assertErrorResponse(t, await call(app, 'POST', '/tenants', { id: 'b', disabled: 'yes' }), invalid('"disabled" must be boolean.', 'disabled'))
  assertErrorResponse(t, await call(app, 'POST', '/tenants', { id: 'no spaces' }), invalid('"id" must match pattern "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$".', 'id'))
  assertErrorResponse(t, await call(app, 'POST', '/tenants', { maxN: 2 }), invalid('Missing required field "id".', 'id'))
  assertErrorResponse(t, await call(app, 'POST', '/tenants', [{ id: 'b' }]), invalid('Request body must be a JSON object.'))
  assertErrorResponse(t, await app.inject({ method: 'POST', url: '/admin/v1/tenants', headers: { ...auth, 'content-type': 'application/json' }, payload: '{"id":' }), invalid('Request body is not valid JSON.'))
  // Beyond the schema, the tenants file's own checks: the same code.
  assertErrorResponse(t, await call(app, 'POST', '/tenants', { id: 'b', rateLimit: { max: 1, timeWindow: 'soonish' } }), invalid('"rateLimit.timeWindow" cannot read "soonish" as a duration.', 'rateLimit.timeWindow'))
  assertErrorResponse(t, await call(app, 'POST', '/tenants', { id: 'b', webhookEndpoints: [{ url: 'https://hooks.example.com/x', events: ['video.completed'], format: 'native' }] }), invalid('"webhookEndpoints" needs webhookSecrets to sign the events.', 'webhookEndpoints'))
  // Update: the same schema, without id.
  assertErrorResponse(t, await call(app, 'PUT', '/tenants/acme', { id: 'acme' }), invalid('Unknown field "id": check its spelling.', 'id'))
  assertErrorResponse(t, await call(app, 'PUT', '/tenants/acme', { maxDuration: 0 }), invalid('"maxDuration" must be >= 1.', 'maxDuration'))
  assertErrorResponse(t, await call(app, 'PUT', '/tenants/acme', { readRateLimit: { max: 1, timeWindow: 'x' } }), invalid('"readRateLimit.timeWindow" must be integer.', 'readRateLimit.timeWindow'))
  // Paths and queries
  assertErrorResponse(t, await call(app, 'GET', '/tenants/bad%20id'), invalid('"tenant_id" must match pattern "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$".', 'tenant_id'))
  assertErrorResponse(t, await call(app, 'GET', '/tenants?limit=0'), invalid('"limit" must match pattern "^(?:[1-9]|[1-9][0-9]|100)$".', 'limit'))
  assertErrorResponse(t, await call(app, 'GET', '/tenants?limit=101'), invalid('"limit" must match pattern "^(?:[1-9]|[1-9][0-9]|100)$".', 'limit'))
  assertErrorResponse(t, await call(app, 'GET', '/tenants?page=2'), invalid('Unknown field "page": check its spelling.', 'page'))

  const listed = await call(app, 'GET', '/tenants')
  t.same(listed.json().data.map((row: { id: string }) => row.id), ['acme'], 'nothing else was created')
  t.same((await call(app, 'GET', '/tenants/acme')).json().maxDuration, undefined, 'nothing was updated')
})

t.test('keys: create (shown once), list, revoke, set expiry; several live keys', async (t) => {
  const app = await databaseApp(t)
  if (app === null) return
  await call(app, 'POST', '/tenants', { id: 'acme' })

  const created = await call(app, 'POST', '/tenants/acme/keys', { label: 'ci' })
  t.equal(created.statusCode, 201)
  const key = created.json()
  t.match(key.key, /^vgk_[A-Za-z0-9_-]{43}$/)
  t.same(key, {
    object: 'key',
    id: key.id,
    tenant_id: 'acme',
    prefix: key.key.slice(0, 12),
    label: 'ci',
    status: 'active',
    created_at: key.created_at,
    expires_at: null,
    revoked_at: null,
    last_used_at: null,
    key: key.key
  })
  t.match(key.id, /^key_[A-Za-z0-9_-]{12}$/)
  const expiresAt = new Date(Date.now() + 86_400_000).toISOString()
  const second = (await call(app, 'POST', '/tenants/acme/keys', { expires_at: expiresAt })).json()
  t.equal(second.expires_at, expiresAt)
  t.equal(second.label, null)
  t.not(second.key, key.key)
  t.equal((await call(app, 'GET', '/tenants/acme')).json().live_keys, 2, 'two live keys at once')

  const listed = await call(app, 'GET', '/tenants/acme/keys')
  t.equal(listed.statusCode, 200)
  const { key: _shownOnce, ...listedFirst } = key
  t.same(listed.json().data, [listedFirst, (({ key: _k, ...rest }) => rest)(second)])
  t.notOk(listed.body.includes(key.key) || listed.body.includes(tenantKeyHash(key.key)), 'a list never shows a key or its hash')

  const revoked = await call(app, 'POST', `/tenants/acme/keys/${key.id as string}/revoke`)
  t.equal(revoked.statusCode, 200)
  t.equal(revoked.json().status, 'revoked')
  t.match(revoked.json().revoked_at, isoDate)
  const again = await call(app, 'POST', `/tenants/acme/keys/${key.id as string}/revoke`)
  t.same(again.json(), revoked.json(), 'revoking again changes nothing')
  assertErrorResponse(t, await call(app, 'PATCH', `/tenants/acme/keys/${key.id as string}`, { expires_at: null }), { status: 409, code: 'key_revoked', type: 'invalid_request_error', message: `Key "${key.id as string}" is revoked: it cannot be changed (create a new key).`, param: 'key_id' })

  const later = new Date(Date.now() + 7 * 86_400_000).toISOString()
  const extended = await call(app, 'PATCH', `/tenants/acme/keys/${second.id as string}`, { expires_at: later })
  t.equal(extended.statusCode, 200)
  t.equal(extended.json().expires_at, later)
  const cleared = await call(app, 'PATCH', `/tenants/acme/keys/${second.id as string}`, { expires_at: null })
  t.equal(cleared.json().expires_at, null)
  t.equal((await call(app, 'GET', '/tenants/acme')).json().live_keys, 1)
})

t.test('keys: bad input', async (t) => {
  const app = await databaseApp(t)
  if (app === null) return
  await call(app, 'POST', '/tenants', { id: 'acme' })
  await call(app, 'POST', '/tenants', { id: 'other' })
  const otherKey = (await call(app, 'POST', '/tenants/other/keys', {})).json()
  const invalid = (message: string, param?: string) => ({ status: 400, code: 'invalid_request', type: 'invalid_request_error', message, ...(param === undefined ? {} : { param }) })

  assertErrorResponse(t, await call(app, 'POST', '/tenants/acme/keys', { label: '' }), invalid('"label" must NOT have fewer than 1 characters.', 'label'))
  assertErrorResponse(t, await call(app, 'POST', '/tenants/acme/keys', { label: 'x'.repeat(201) }), invalid('"label" must NOT have more than 200 characters.', 'label'))
  assertErrorResponse(t, await call(app, 'POST', '/tenants/acme/keys', { name: 'ci' }), invalid('Unknown field "name": check its spelling.', 'name'))
  assertErrorResponse(t, await call(app, 'POST', '/tenants/acme/keys', { expires_at: 'tomorrow' }), invalid('"expires_at" must match format "date-time".', 'expires_at'))
  assertErrorResponse(t, await call(app, 'POST', '/tenants/acme/keys', { expires_at: 12 }), invalid('"expires_at" must be string.', 'expires_at'))
  assertErrorResponse(t, await call(app, 'POST', '/tenants/acme/keys', { expires_at: '2020-01-01T00:00:00Z' }), invalid('"expires_at" must be in the future (revoke a key to stop it now).', 'expires_at'))
  assertErrorResponse(t, await call(app, 'POST', '/tenants/nobody/keys', {}), { status: 404, code: 'not_found', type: 'invalid_request_error', message: 'Tenant "nobody" not found.', param: 'tenant_id' })
  assertErrorResponse(t, await call(app, 'PATCH', `/tenants/acme/keys/${otherKey.id as string}`, {}), invalid('Missing required field "expires_at".', 'expires_at'))
  // Another tenant's key is not found here (never revealed as existing).
  assertErrorResponse(t, await call(app, 'POST', `/tenants/acme/keys/${otherKey.id as string}/revoke`), { status: 404, code: 'not_found', type: 'invalid_request_error', message: `Key "${otherKey.id as string}" not found for this tenant.`, param: 'key_id' })
  assertErrorResponse(t, await call(app, 'PATCH', `/tenants/acme/keys/${otherKey.id as string}`, { expires_at: null }), { status: 404, code: 'not_found', type: 'invalid_request_error', message: `Key "${otherKey.id as string}" not found for this tenant.`, param: 'key_id' })
  assertErrorResponse(t, await call(app, 'POST', `/tenants/acme/keys/${otherKey.key as string}/revoke`), invalid('"key_id" must match pattern "^key_[A-Za-z0-9_-]{1,64}$".', 'key_id'))
  t.equal((await call(app, 'GET', '/tenants/acme')).json().live_keys, 0, 'no key was made')
  t.equal((await call(app, 'GET', '/tenants/other/keys')).json().data[0].status, 'active', 'the other tenant\'s key is untouched')
})

t.test('the audit log: every change, who, what, before and after, the request id; append-only; paged', async (t) => {
  const app = await databaseApp(t)
  if (app === null) return
  const changes = [
    await call(app, 'POST', '/tenants', { id: 'acme', maxN: 1, webhookSecrets: ['whsec_' + Buffer.alloc(24, 1).toString('base64')] }),
    await call(app, 'PUT', '/tenants/acme', { maxN: 2 }),
    await call(app, 'POST', '/tenants/acme/keys', { label: 'ci' }),
    await call(app, 'POST', '/tenants/acme/disable'),
    await call(app, 'POST', '/tenants', { id: 'other' }),
    await call(app, 'DELETE', '/tenants/other')
  ]
  const keyId = changes[2]!.json().id as string
  changes.push(await call(app, 'PATCH', `/tenants/acme/keys/${keyId}`, { expires_at: new Date(Date.now() + 3_600_000).toISOString() }))
  changes.push(await call(app, 'POST', `/tenants/acme/keys/${keyId}/revoke`))
  // Refused changes and reads leave no row.
  await call(app, 'POST', '/tenants', { id: 'acme' })
  await call(app, 'GET', '/tenants/acme')

  const log = await call(app, 'GET', '/audit')
  t.equal(log.statusCode, 200)
  const entries = log.json().data as Array<Record<string, any>>
  t.same(entries.map((entry) => entry.action), ['key.revoke', 'key.expiry', 'tenant.delete', 'tenant.create', 'tenant.disable', 'key.create', 'tenant.update', 'tenant.create'])
  t.same(entries.map((entry) => entry.request_id), changes.map((change) => change.headers['x-request-id']).reverse(), 'each row carries its change\'s request id')
  t.ok(entries.every((entry) => entry.actor === actor), `actor: the admin token's hash prefix (${actor})`)
  t.ok(entries.every((entry) => isoDate.test(entry.at)))
  const update = entries[6]!
  t.same(update, {
    object: 'audit_entry',
    id: update.id,
    at: update.at,
    actor,
    action: 'tenant.update',
    tenant_id: 'acme',
    key_id: null,
    before: { id: 'acme', disabled: false, maxN: 1, webhookSecrets: '1 secret(s)' },
    after: { id: 'acme', disabled: false, maxN: 2 },
    request_id: changes[1]!.headers['x-request-id']
  })
  const keyCreate = entries[5]!
  t.same([keyCreate.key_id, keyCreate.before, keyCreate.after], [keyId, null, { id: keyId, prefix: changes[2]!.json().prefix, label: 'ci', expires_at: null, revoked_at: null }])
  t.notOk(log.body.includes(changes[2]!.json().key) || log.body.includes(tenantKeyHash(changes[2]!.json().key)) || log.body.includes('whsec_'), 'no key, key hash or webhook secret in the audit log')
  t.same(entries[2]!.after, null, 'a delete has no after')
  t.equal(entries[2]!.before.id, 'other')

  const onlyOther = await call(app, 'GET', '/audit?tenant_id=other')
  t.same(onlyOther.json().data.map((entry: { action: string }) => entry.action), ['tenant.delete', 'tenant.create'], 'a deleted tenant\'s audit stays')
  const first = await call(app, 'GET', '/audit?limit=3')
  t.same([first.json().data.length, first.json().has_more], [3, true])
  const next = await call(app, 'GET', `/audit?limit=3&before=${first.json().last_id as string}`)
  t.same(next.json().data.map((entry: { action: string }) => entry.action), ['tenant.create', 'tenant.disable', 'key.create'])
  const last = await call(app, 'GET', `/audit?before=${next.json().last_id as string}`)
  t.same([last.json().data.length, last.json().has_more], [2, false])
  assertErrorResponse(t, await call(app, 'GET', '/audit?before=abc'), { status: 400, code: 'invalid_request', type: 'invalid_request_error', message: '"before" must match pattern "^[1-9][0-9]{0,17}$".', param: 'before' })
})
