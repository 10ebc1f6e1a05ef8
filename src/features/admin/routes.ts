import { randomBytes } from 'node:crypto'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type pg from 'pg'
import { gatewayError, isGatewayError } from '../../errors/table.ts'
import { errorResponses } from '../../schemas/errors.ts'
import { buildTenantRegistry, generateTenantKey, tenantKeyHash, TenantsFileError } from '../tenants/registry.ts'
import {
  AuditList, AuditQuery, CreatedKey, CreateKeyBody, CreateTenantBody, DeletedTenant, Key, KeyList, KeyParams,
  ListTenantsQuery, Tenant, TenantIdParams, TenantList, UpdateKeyBody, UpdateTenantBody, adminTag
} from './schemas.ts'
import {
  changeKey, countLiveKeys, createKey, createTenant, deleteTenant, getTenant, listAudit, listKeys, listTenants,
  setTenantDisabled, TenantExistsError, updateTenant, type AuditContext, type AuditRow, type KeyRow, type TenantRow, type TenantSettings
} from './store.ts'

export interface AdminRoutesOptions {
  authenticateAdmin: (request: FastifyRequest) => Promise<void>
  now: () => number
}

const defaultPageSize = 20
const security = [{ adminToken: [] }]

/** A new key id: not a secret, just a handle that never reveals the key. */
export function newKeyId (): string {
  return 'key_' + randomBytes(9).toString('base64url')
}

/** The start of a key shown in lists, to recognise it (`vgk_` and 8 of its 43 random characters). */
export function keyPrefix (key: string): string {
  return key.slice(0, 12)
}

/** SQLSTATEs of a database that is away (connection, shutdown, resources) rather than of a bad statement. */
function isUnavailable (error: unknown): boolean {
  // A bug in this code stays a 500 (and is logged as one), never a misleading 503.
  if (error instanceof TypeError || error instanceof RangeError || error instanceof ReferenceError || error instanceof SyntaxError) return false
  const code = (error as { code?: unknown }).code
  // node-postgres' own errors carry no code: "Connection terminated", connect and query timeouts.
  if (code === undefined) return error instanceof Error
  return typeof code === 'string' && (/^(08|53|57P0)/.test(code) || /^E[A-Z]+$/.test(code))
}

/** The database mode's pool, or 409 in file mode. */
function poolOf (fastify: FastifyInstance): pg.Pool {
  if (fastify.database === null) throw gatewayError('database_mode_required')
  return fastify.database.pool
}

/** Runs a database call; an unreachable database is 503 database_unavailable, never a 500. */
async function withDatabase<T> (fastify: FastifyInstance, work: (pool: pg.Pool) => Promise<T>): Promise<T> {
  const pool = poolOf(fastify)
  try {
    return await work(pool)
  } catch (error) {
    if (isGatewayError(error) || error instanceof TenantExistsError || !isUnavailable(error)) throw error
    fastify.database?.failed(error)
    throw gatewayError('database_unavailable', { cause: error, headers: { 'retry-after': '5' } })
  }
}

/**
 * The checks a tenants file gets beyond its schema (durations that must parse, webhook endpoints that
 * need secrets): the same code, so a tenant the API accepts is one the file would accept. A 400 names the field.
 */
function checkSettings (id: string, settings: TenantSettings): void {
  try {
    // A placeholder key hash: `keys` is required in a file, and made by the API here.
    buildTenantRegistry([{ ...settings, id, keys: ['sha256:' + '0'.repeat(64)] }])
  } catch (error) {
    if (!(error instanceof TenantsFileError)) throw error
    const match = /^tenants\[0\]\.?(\S*?):? (.*)$/.exec(error.message)
    const param = match?.[1] === '' ? undefined : match?.[1]
    const problem = match?.[2] ?? error.message
    throw gatewayError('invalid_request', { args: [param === undefined ? `${problem}.` : `"${param}" ${problem}.`], ...(param === undefined ? {} : { param }) })
  }
}

function auditContext (request: FastifyRequest): AuditContext {
  return { actor: request.adminActor ?? 'unknown', requestId: request.id }
}

function presentTenant (row: TenantRow, liveKeys: number) {
  return {
    object: 'tenant' as const,
    id: row.id,
    ...row.settings,
    disabled: row.disabled,
    live_keys: liveKeys,
    created_at: row.createdAt.toISOString(),
    updated_at: row.updatedAt.toISOString()
  }
}

function presentKey (row: KeyRow, nowMs: number) {
  const status = row.revokedAt !== null ? 'revoked' as const : row.expiresAt !== null && row.expiresAt.getTime() <= nowMs ? 'expired' as const : 'active' as const
  return {
    object: 'key' as const,
    id: row.id,
    tenant_id: row.tenantId,
    prefix: row.prefix,
    label: row.label,
    status,
    created_at: row.createdAt.toISOString(),
    expires_at: row.expiresAt?.toISOString() ?? null,
    revoked_at: row.revokedAt?.toISOString() ?? null,
    last_used_at: row.lastUsedAt?.toISOString() ?? null
  }
}

function presentAudit (row: AuditRow) {
  return {
    object: 'audit_entry' as const,
    id: String(row.id),
    at: row.at.toISOString(),
    actor: row.actor,
    action: row.action,
    tenant_id: row.tenantId,
    key_id: row.keyId,
    before: row.before,
    after: row.after,
    request_id: row.requestId
  }
}

function tenantNotFound (id: string) {
  return gatewayError('not_found', { args: [`Tenant "${id}" not found.`], param: 'tenant_id' })
}

function keyNotFound (id: string) {
  return gatewayError('not_found', { args: [`Key "${id}" not found for this tenant.`], param: 'key_id' })
}

/** An expiry the caller sent: in the future, or null (never). */
function parseExpiry (value: string | null | undefined, nowMs: number): Date | null {
  if (value === undefined || value === null) return null
  const at = new Date(value)
  if (Number.isNaN(at.getTime())) throw gatewayError('invalid_request', { args: ['"expires_at" is not a valid RFC 3339 date-time.'], param: 'expires_at' })
  if (at.getTime() <= nowMs) throw gatewayError('invalid_request', { args: ['"expires_at" must be in the future (revoke a key to stop it now).'], param: 'expires_at' })
  return at
}

/** `/admin/v1`: tenants, keys and the audit log of database mode, for admin tokens only. */
const adminRoutes: FastifyPluginAsyncTypebox<AdminRoutesOptions> = async (fastify, options) => {
  const { now } = options
  fastify.addHook('onRequest', options.authenticateAdmin)

  async function liveKeysOf (pool: pg.Pool, ids: readonly string[]): Promise<Map<string, number>> {
    return await countLiveKeys(pool, ids, new Date(now()))
  }

  const config = { admin: true }

  fastify.post('/tenants', {
    config,
    schema: {
      tags: [adminTag],
      summary: 'Create a tenant',
      description: 'The fields of a tenants-file entry, validated by the same schema, without `keys` (create them next). Served by every gateway within a second of its first key.',
      operationId: 'adminCreateTenant',
      security,
      body: CreateTenantBody,
      response: { 201: Tenant, ...errorResponses([400, 401, 403, 409, 429, 500, 503]) }
    }
  }, async function createTenantRoute (request, reply) {
    const { id, disabled = false, ...settings } = request.body
    checkSettings(id, settings)
    const row = await withDatabase(fastify, async (pool) => {
      try {
        return await createTenant(pool, auditContext(request), { id, settings, disabled })
      } catch (error) {
        if (error instanceof TenantExistsError) throw gatewayError('tenant_exists', { args: [id], param: 'id' })
        throw error
      }
    })
    return await reply.code(201).send(presentTenant(row, 0))
  })

  fastify.get('/tenants', {
    config,
    schema: {
      tags: [adminTag],
      summary: 'List tenants',
      description: 'By id, with cursor paging (`after` = the previous page\'s `last_id`, `limit` ≤ 100).',
      operationId: 'adminListTenants',
      security,
      querystring: ListTenantsQuery,
      response: { 200: TenantList, ...errorResponses([400, 401, 403, 409, 429, 500, 503]) }
    }
  }, async function listTenantsRoute (request) {
    const limit = request.query.limit === undefined ? defaultPageSize : Number(request.query.limit)
    const { rows, hasMore, live } = await withDatabase(fastify, async (pool) => {
      const page = await listTenants(pool, { after: request.query.after ?? null, limit })
      return { ...page, live: await liveKeysOf(pool, page.rows.map((row) => row.id)) }
    })
    const data = rows.map((row) => presentTenant(row, live.get(row.id) ?? 0))
    return { object: 'list' as const, data, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null, has_more: hasMore }
  })

  fastify.get('/tenants/:tenant_id', {
    config,
    schema: {
      tags: [adminTag],
      summary: 'Read a tenant',
      operationId: 'adminGetTenant',
      security,
      params: TenantIdParams,
      response: { 200: Tenant, ...errorResponses([400, 401, 403, 404, 409, 429, 500, 503]) }
    }
  }, async function getTenantRoute (request) {
    const id = request.params.tenant_id
    const { row, live } = await withDatabase(fastify, async (pool) => {
      const found = await getTenant(pool, id)
      return { row: found, live: found === null ? new Map<string, number>() : await liveKeysOf(pool, [id]) }
    })
    if (row === null) throw tenantNotFound(id)
    return presentTenant(row, live.get(id) ?? 0)
  })

  fastify.put('/tenants/:tenant_id', {
    config,
    schema: {
      tags: [adminTag],
      summary: 'Replace a tenant\'s settings',
      description: 'Every setting, as in a tenants-file entry without `id` and `keys` (validated by the same schema): what is left out goes back to its default. Keys are not touched. Every gateway applies it within a second; requests already under way finish with the settings they started with.',
      operationId: 'adminUpdateTenant',
      security,
      params: TenantIdParams,
      body: UpdateTenantBody,
      response: { 200: Tenant, ...errorResponses([400, 401, 403, 404, 409, 429, 500, 503]) }
    }
  }, async function updateTenantRoute (request) {
    const id = request.params.tenant_id
    checkSettings(id, request.body)
    const { row, live } = await withDatabase(fastify, async (pool) => {
      const updated = await updateTenant(pool, auditContext(request), id, request.body)
      return { row: updated, live: updated === null ? new Map<string, number>() : await liveKeysOf(pool, [id]) }
    })
    if (row === null) throw tenantNotFound(id)
    return presentTenant(row, live.get(id) ?? 0)
  })

  for (const [action, disabled] of [['disable', true], ['enable', false]] as const) {
    fastify.post(`/tenants/:tenant_id/${action}`, {
      config,
      schema: {
        tags: [adminTag],
        summary: disabled ? 'Disable a tenant' : 'Enable a tenant',
        description: disabled
          ? 'Its keys are refused (401) by every gateway within a second, as if the tenant did not exist; its settings, keys and audit stay. Enable undoes it.'
          : 'Its live keys work again.',
        operationId: disabled ? 'adminDisableTenant' : 'adminEnableTenant',
        security,
        params: TenantIdParams,
        response: { 200: Tenant, ...errorResponses([400, 401, 403, 404, 409, 429, 500, 503]) }
      }
    }, async function setDisabledRoute (request) {
      const id = request.params.tenant_id
      const { row, live } = await withDatabase(fastify, async (pool) => {
        const changed = await setTenantDisabled(pool, auditContext(request), id, disabled)
        return { row: changed, live: changed === null ? new Map<string, number>() : await liveKeysOf(pool, [id]) }
      })
      if (row === null) throw tenantNotFound(id)
      return presentTenant(row, live.get(id) ?? 0)
    })
  }

  fastify.delete('/tenants/:tenant_id', {
    config,
    schema: {
      tags: [adminTag],
      summary: 'Delete a tenant',
      description: 'The tenant and its keys; its audit rows stay. Its keys are refused and its tasks unreadable (404) on every gateway within a second.',
      operationId: 'adminDeleteTenant',
      security,
      params: TenantIdParams,
      response: { 200: DeletedTenant, ...errorResponses([400, 401, 403, 404, 409, 429, 500, 503]) }
    }
  }, async function deleteTenantRoute (request) {
    const id = request.params.tenant_id
    const row = await withDatabase(fastify, async (pool) => await deleteTenant(pool, auditContext(request), id))
    if (row === null) throw tenantNotFound(id)
    return { object: 'tenant.deleted' as const, id, deleted: true as const }
  })

  fastify.post('/tenants/:tenant_id/keys', {
    config,
    schema: {
      tags: [adminTag],
      summary: 'Create a key',
      description: 'A new tenant key, answered this once in `key` (the gateway keeps only its hash). A tenant may have several live keys: create the new one, move the clients, then revoke or expire the old one.',
      operationId: 'adminCreateKey',
      security,
      params: TenantIdParams,
      body: CreateKeyBody,
      response: { 201: CreatedKey, ...errorResponses([400, 401, 403, 404, 409, 429, 500, 503]) }
    }
  }, async function createKeyRoute (request, reply) {
    const tenantId = request.params.tenant_id
    const expiresAt = parseExpiry(request.body.expires_at, now())
    const key = generateTenantKey()
    const row = await withDatabase(fastify, async (pool) => await createKey(pool, auditContext(request), {
      id: newKeyId(),
      tenantId,
      keyHash: tenantKeyHash(key),
      prefix: keyPrefix(key),
      label: request.body.label ?? null,
      expiresAt
    }))
    if (row === null) throw tenantNotFound(tenantId)
    return await reply.code(201).send({ ...presentKey(row, now()), key })
  })

  fastify.get('/tenants/:tenant_id/keys', {
    config,
    schema: {
      tags: [adminTag],
      summary: 'List a tenant\'s keys',
      description: 'Every key of the tenant, revoked and expired ones too, oldest first: prefix, label, status, created, expires, last used (within a minute). Never the key or its hash.',
      operationId: 'adminListKeys',
      security,
      params: TenantIdParams,
      response: { 200: KeyList, ...errorResponses([400, 401, 403, 404, 409, 429, 500, 503]) }
    }
  }, async function listKeysRoute (request) {
    const tenantId = request.params.tenant_id
    const { tenant, keys } = await withDatabase(fastify, async (pool) => {
      const found = await getTenant(pool, tenantId)
      return { tenant: found, keys: found === null ? [] : await listKeys(pool, tenantId) }
    })
    if (tenant === null) throw tenantNotFound(tenantId)
    const nowMs = now()
    return { object: 'list' as const, data: keys.map((row) => presentKey(row, nowMs)) }
  })

  fastify.post('/tenants/:tenant_id/keys/:key_id/revoke', {
    config,
    schema: {
      tags: [adminTag],
      summary: 'Revoke a key',
      description: 'Refused by every gateway within a second. Idempotent: revoking a revoked key answers it unchanged.',
      operationId: 'adminRevokeKey',
      security,
      params: KeyParams,
      response: { 200: Key, ...errorResponses([400, 401, 403, 404, 409, 429, 500, 503]) }
    }
  }, async function revokeKeyRoute (request) {
    const { tenant_id: tenantId, key_id: keyId } = request.params
    const changed = await withDatabase(fastify, async (pool) => await changeKey(pool, auditContext(request), tenantId, keyId, { revoke: true }))
    if (changed === null) throw keyNotFound(keyId)
    return presentKey(changed.after, now())
  })

  fastify.patch('/tenants/:tenant_id/keys/:key_id', {
    config,
    schema: {
      tags: [adminTag],
      summary: 'Set a key\'s expiry',
      description: '`expires_at` in the future, or null (never). Every gateway stops accepting the key at that time, without asking the database.',
      operationId: 'adminUpdateKey',
      security,
      params: KeyParams,
      body: UpdateKeyBody,
      response: { 200: Key, ...errorResponses([400, 401, 403, 404, 409, 429, 500, 503]) }
    }
  }, async function updateKeyRoute (request) {
    const { tenant_id: tenantId, key_id: keyId } = request.params
    const expiresAt = parseExpiry(request.body.expires_at, now())
    const changed = await withDatabase(fastify, async (pool) => await changeKey(pool, auditContext(request), tenantId, keyId, { expiresAt }))
    if (changed === null) throw keyNotFound(keyId)
    if (changed.before.revokedAt !== null) throw gatewayError('key_revoked', { args: [keyId], param: 'key_id' })
    return presentKey(changed.after, now())
  })

  fastify.get('/audit', {
    config,
    schema: {
      tags: [adminTag],
      summary: 'The audit log',
      description: 'Every admin change, newest first, append-only: who (the admin token\'s hash prefix), what, before and after, the request id, when. `before` pages back (the previous page\'s `last_id`); `tenant_id` narrows it to one tenant.',
      operationId: 'adminListAudit',
      security,
      querystring: AuditQuery,
      response: { 200: AuditList, ...errorResponses([400, 401, 403, 409, 429, 500, 503]) }
    }
  }, async function listAuditRoute (request) {
    const limit = request.query.limit === undefined ? defaultPageSize : Number(request.query.limit)
    const page = await withDatabase(fastify, async (pool) => await listAudit(pool, {
      tenantId: request.query.tenant_id ?? null,
      before: request.query.before === undefined ? null : Number(request.query.before),
      limit
    }))
    const data = page.rows.map(presentAudit)
    return { object: 'list' as const, data, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null, has_more: page.hasMore }
  })
}

export default adminRoutes
