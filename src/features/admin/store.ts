import type pg from 'pg'
import type { TenantDefinition } from '../../schemas/tenants.ts'

/**
 * Every SQL statement of database mode's tenants, keys and audit log. Each admin
 * change runs in one transaction with its audit row; the triggers of the first
 * migration NOTIFY the gateways in that same transaction (delivered at commit).
 */

/** A tenants-file entry without `id` and `keys`: what `tenants.settings` holds. */
export type TenantSettings = Omit<TenantDefinition, 'id' | 'keys'>

export interface TenantRow {
  id: string
  settings: TenantSettings
  disabled: boolean
  createdAt: Date
  updatedAt: Date
}

export interface KeyRow {
  id: string
  tenantId: string
  keyHash: string
  prefix: string | null
  label: string | null
  createdAt: Date
  expiresAt: Date | null
  revokedAt: Date | null
  lastUsedAt: Date | null
}

export interface AuditRow {
  id: number
  at: Date
  actor: string
  action: string
  tenantId: string | null
  keyId: string | null
  before: unknown
  after: unknown
  requestId: string | null
}

/** Who made a change and under which request: every audit row carries it. */
export interface AuditContext {
  /** the admin token's hash prefix (`sha256:1a2b3c4d`), or the CLI (`cli:import`) */
  actor: string
  requestId: string | null
}

export type Queryable = Pick<pg.Pool | pg.PoolClient, 'query'>

export class TenantExistsError extends Error {
  override name = 'TenantExistsError'
}

interface TenantRecord { id: string, settings: TenantSettings, disabled: boolean, created_at: Date, updated_at: Date }
interface KeyRecord { id: string, tenant_id: string, key_hash: string, prefix: string | null, label: string | null, created_at: Date, expires_at: Date | null, revoked_at: Date | null, last_used_at: Date | null }
interface AuditRecord { id: string, at: Date, actor: string, action: string, tenant_id: string | null, key_id: string | null, before: unknown, after: unknown, request_id: string | null }

const tenantColumns = 'id, settings, disabled, created_at, updated_at'
const keyColumns = 'id, tenant_id, key_hash, prefix, label, created_at, expires_at, revoked_at, last_used_at'

function tenantOf (record: TenantRecord): TenantRow {
  return { id: record.id, settings: record.settings, disabled: record.disabled, createdAt: record.created_at, updatedAt: record.updated_at }
}

function keyOf (record: KeyRecord): KeyRow {
  return {
    id: record.id,
    tenantId: record.tenant_id,
    keyHash: record.key_hash,
    prefix: record.prefix,
    label: record.label,
    createdAt: record.created_at,
    expiresAt: record.expires_at,
    revokedAt: record.revoked_at,
    lastUsedAt: record.last_used_at
  }
}

function auditOf (record: AuditRecord): AuditRow {
  return {
    id: Number(record.id),
    at: record.at,
    actor: record.actor,
    action: record.action,
    tenantId: record.tenant_id,
    keyId: record.key_id,
    before: record.before,
    after: record.after,
    requestId: record.request_id
  }
}

/** What an audit row keeps of a tenant: everything (there is no secret in it but webhook secrets, shown as counts). */
export function auditTenant (row: TenantRow): Record<string, unknown> {
  const { webhookSecrets, ...settings } = row.settings
  return { id: row.id, disabled: row.disabled, ...settings, ...(webhookSecrets === undefined ? {} : { webhookSecrets: `${webhookSecrets.length} secret(s)` }) }
}

/** What an audit row keeps of a key: never its hash. */
export function auditKey (row: KeyRow): Record<string, unknown> {
  return {
    id: row.id,
    prefix: row.prefix,
    label: row.label,
    expires_at: row.expiresAt?.toISOString() ?? null,
    revoked_at: row.revokedAt?.toISOString() ?? null
  }
}

/** Runs `work` in one transaction on one connection of the pool. */
export async function inTransaction<T> (pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect()
  try {
    await client.query('BEGIN')
    const result = await work(client)
    await client.query('COMMIT')
    return result
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {})
    throw error
  } finally {
    client.release()
  }
}

export async function insertAudit (db: Queryable, context: AuditContext, entry: { action: string, tenantId: string | null, keyId?: string | null, before: unknown, after: unknown }): Promise<void> {
  await db.query(
    'INSERT INTO admin_audit (actor, action, tenant_id, key_id, before, after, request_id) VALUES ($1, $2, $3, $4, $5, $6, $7)',
    [context.actor, entry.action, entry.tenantId, entry.keyId ?? null, entry.before === null ? null : JSON.stringify(entry.before), entry.after === null ? null : JSON.stringify(entry.after), context.requestId]
  )
}

// ---------------------------------------------------------------------------
// What the gateways hold (tenant-sync.ts): every tenant, every key not revoked.

export interface TenantSnapshot {
  tenants: TenantRow[]
  /** keys not revoked (expired ones too: the gateway drops them when their time comes) */
  keys: KeyRow[]
}

/** All tenants and their unrevoked keys, or only those of `ids`, read in one snapshot (REPEATABLE READ). */
export async function loadTenantSnapshot (pool: pg.Pool, ids?: readonly string[]): Promise<TenantSnapshot> {
  const client = await pool.connect()
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY')
    const tenants = ids === undefined
      ? await client.query<TenantRecord>(`SELECT ${tenantColumns} FROM tenants ORDER BY id`)
      : await client.query<TenantRecord>(`SELECT ${tenantColumns} FROM tenants WHERE id = ANY($1) ORDER BY id`, [ids])
    const keys = ids === undefined
      ? await client.query<KeyRecord>(`SELECT ${keyColumns} FROM tenant_keys WHERE revoked_at IS NULL ORDER BY tenant_id, created_at, id`)
      : await client.query<KeyRecord>(`SELECT ${keyColumns} FROM tenant_keys WHERE revoked_at IS NULL AND tenant_id = ANY($1) ORDER BY tenant_id, created_at, id`, [ids])
    await client.query('COMMIT')
    return { tenants: tenants.rows.map(tenantOf), keys: keys.rows.map(keyOf) }
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {})
    throw error
  } finally {
    client.release()
  }
}

/** Last use of keys, batched (tenant-sync.ts, at most once a minute): no notification, nothing the gateways hold changes. */
export async function recordKeyUse (db: Queryable, keyHashes: readonly string[], at: Date): Promise<void> {
  if (keyHashes.length === 0) return
  await db.query(
    'UPDATE tenant_keys SET last_used_at = $2 WHERE key_hash = ANY($1) AND (last_used_at IS NULL OR last_used_at < $2)',
    [keyHashes, at]
  )
}

// ---------------------------------------------------------------------------
// Tenants

function isUniqueViolation (error: unknown): boolean {
  return (error as { code?: unknown }).code === '23505'
}

export async function createTenant (pool: pg.Pool, context: AuditContext, tenant: { id: string, settings: TenantSettings, disabled: boolean }): Promise<TenantRow> {
  return await inTransaction(pool, async (client) => {
    let row: TenantRow
    try {
      const result = await client.query<TenantRecord>(
        `INSERT INTO tenants (id, settings, disabled) VALUES ($1, $2, $3) RETURNING ${tenantColumns}`,
        [tenant.id, JSON.stringify(tenant.settings), tenant.disabled]
      )
      row = tenantOf(result.rows[0] as TenantRecord)
    } catch (error) {
      if (isUniqueViolation(error)) throw new TenantExistsError(`tenant "${tenant.id}" already exists`, { cause: error })
      throw error
    }
    await insertAudit(client, context, { action: 'tenant.create', tenantId: row.id, before: null, after: auditTenant(row) })
    return row
  })
}

export async function getTenant (db: Queryable, id: string): Promise<TenantRow | null> {
  const result = await db.query<TenantRecord>(`SELECT ${tenantColumns} FROM tenants WHERE id = $1`, [id])
  const record = result.rows[0]
  return record === undefined ? null : tenantOf(record)
}

/** A page of tenants by id, after `after` (exclusive); one more than `limit` tells whether there are more. */
export async function listTenants (db: Queryable, page: { after: string | null, limit: number }): Promise<{ rows: TenantRow[], hasMore: boolean }> {
  const result = page.after === null
    ? await db.query<TenantRecord>(`SELECT ${tenantColumns} FROM tenants ORDER BY id LIMIT $1`, [page.limit + 1])
    : await db.query<TenantRecord>(`SELECT ${tenantColumns} FROM tenants WHERE id > $1 ORDER BY id LIMIT $2`, [page.after, page.limit + 1])
  const rows = result.rows.map(tenantOf)
  return { rows: rows.slice(0, page.limit), hasMore: rows.length > page.limit }
}

/** Live keys per tenant (not revoked, not expired at `now`), for the tenant objects. */
export async function countLiveKeys (db: Queryable, ids: readonly string[], now: Date): Promise<Map<string, number>> {
  const result = await db.query<{ tenant_id: string, n: number }>(
    'SELECT tenant_id, count(*)::int AS n FROM tenant_keys WHERE tenant_id = ANY($1) AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2) GROUP BY tenant_id',
    [ids, now]
  )
  return new Map(result.rows.map((row) => [row.tenant_id, row.n]))
}

/** Changes a tenant under a row lock: `change` gets the row as it is and returns its new fields, or null (unknown tenant). */
async function changeTenant (pool: pg.Pool, context: AuditContext, id: string, action: string, change: (row: TenantRow) => { settings: TenantSettings, disabled: boolean }): Promise<TenantRow | null> {
  return await inTransaction(pool, async (client) => {
    const current = await client.query<TenantRecord>(`SELECT ${tenantColumns} FROM tenants WHERE id = $1 FOR UPDATE`, [id])
    const record = current.rows[0]
    if (record === undefined) return null
    const before = tenantOf(record)
    const next = change(before)
    const result = await client.query<TenantRecord>(
      `UPDATE tenants SET settings = $2, disabled = $3, updated_at = now() WHERE id = $1 RETURNING ${tenantColumns}`,
      [id, JSON.stringify(next.settings), next.disabled]
    )
    const after = tenantOf(result.rows[0] as TenantRecord)
    await insertAudit(client, context, { action, tenantId: id, before: auditTenant(before), after: auditTenant(after) })
    return after
  })
}

export async function updateTenant (pool: pg.Pool, context: AuditContext, id: string, settings: TenantSettings): Promise<TenantRow | null> {
  return await changeTenant(pool, context, id, 'tenant.update', (row) => ({ settings, disabled: row.disabled }))
}

export async function setTenantDisabled (pool: pg.Pool, context: AuditContext, id: string, disabled: boolean): Promise<TenantRow | null> {
  return await changeTenant(pool, context, id, disabled ? 'tenant.disable' : 'tenant.enable', (row) => ({ settings: row.settings, disabled }))
}

/** Deletes a tenant and its keys (ON DELETE CASCADE); its audit rows stay. */
export async function deleteTenant (pool: pg.Pool, context: AuditContext, id: string): Promise<TenantRow | null> {
  return await inTransaction(pool, async (client) => {
    const result = await client.query<TenantRecord>(`DELETE FROM tenants WHERE id = $1 RETURNING ${tenantColumns}`, [id])
    const record = result.rows[0]
    if (record === undefined) return null
    const before = tenantOf(record)
    await insertAudit(client, context, { action: 'tenant.delete', tenantId: id, before: auditTenant(before), after: null })
    return before
  })
}

// ---------------------------------------------------------------------------
// Keys

export async function createKey (pool: pg.Pool, context: AuditContext, key: { id: string, tenantId: string, keyHash: string, prefix: string | null, label: string | null, expiresAt: Date | null }): Promise<KeyRow | null> {
  return await inTransaction(pool, async (client) => {
    // The tenant's row lock orders this against a concurrent delete of the tenant.
    const tenant = await client.query('SELECT 1 FROM tenants WHERE id = $1 FOR SHARE', [key.tenantId])
    if (tenant.rowCount === 0) return null
    const result = await client.query<KeyRecord>(
      `INSERT INTO tenant_keys (id, tenant_id, key_hash, prefix, label, expires_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING ${keyColumns}`,
      [key.id, key.tenantId, key.keyHash, key.prefix, key.label, key.expiresAt]
    )
    const row = keyOf(result.rows[0] as KeyRecord)
    await insertAudit(client, context, { action: 'key.create', tenantId: key.tenantId, keyId: row.id, before: null, after: auditKey(row) })
    return row
  })
}

export async function listKeys (db: Queryable, tenantId: string): Promise<KeyRow[]> {
  const result = await db.query<KeyRecord>(`SELECT ${keyColumns} FROM tenant_keys WHERE tenant_id = $1 ORDER BY created_at, id`, [tenantId])
  return result.rows.map(keyOf)
}

export async function getKey (db: Queryable, tenantId: string, keyId: string): Promise<KeyRow | null> {
  const result = await db.query<KeyRecord>(`SELECT ${keyColumns} FROM tenant_keys WHERE tenant_id = $1 AND id = $2`, [tenantId, keyId])
  const record = result.rows[0]
  return record === undefined ? null : keyOf(record)
}

export type KeyChange = { revoke: true } | { expiresAt: Date | null }

/** Revokes a key or sets its expiry, under a row lock; null: no such key of this tenant. A revoked key stays revoked. */
export async function changeKey (pool: pg.Pool, context: AuditContext, tenantId: string, keyId: string, change: KeyChange): Promise<{ before: KeyRow, after: KeyRow } | null> {
  return await inTransaction(pool, async (client) => {
    const current = await client.query<KeyRecord>(`SELECT ${keyColumns} FROM tenant_keys WHERE tenant_id = $1 AND id = $2 FOR UPDATE`, [tenantId, keyId])
    const record = current.rows[0]
    if (record === undefined) return null
    const before = keyOf(record)
    if (before.revokedAt !== null) return { before, after: before }
    const result = 'revoke' in change
      ? await client.query<KeyRecord>(`UPDATE tenant_keys SET revoked_at = now() WHERE id = $1 RETURNING ${keyColumns}`, [keyId])
      : await client.query<KeyRecord>(`UPDATE tenant_keys SET expires_at = $2 WHERE id = $1 RETURNING ${keyColumns}`, [keyId, change.expiresAt])
    const after = keyOf(result.rows[0] as KeyRecord)
    await insertAudit(client, context, { action: 'revoke' in change ? 'key.revoke' : 'key.expiry', tenantId, keyId, before: auditKey(before), after: auditKey(after) })
    return { before, after }
  })
}

// ---------------------------------------------------------------------------
// The audit log

/** Newest first; `before`: an audit id, exclusive (the previous page's last). */
export async function listAudit (db: Queryable, page: { tenantId: string | null, before: number | null, limit: number }): Promise<{ rows: AuditRow[], hasMore: boolean }> {
  const conditions: string[] = []
  const values: unknown[] = []
  if (page.tenantId !== null) {
    values.push(page.tenantId)
    conditions.push(`tenant_id = $${values.length}`)
  }
  if (page.before !== null) {
    values.push(page.before)
    conditions.push(`id < $${values.length}`)
  }
  values.push(page.limit + 1)
  const where = conditions.length === 0 ? '' : `WHERE ${conditions.join(' AND ')}`
  const result = await db.query<AuditRecord>(`SELECT id, at, actor, action, tenant_id, key_id, before, after, request_id FROM admin_audit ${where} ORDER BY id DESC LIMIT $${values.length}`, values)
  const rows = result.rows.map(auditOf)
  return { rows: rows.slice(0, page.limit), hasMore: rows.length > page.limit }
}

// ---------------------------------------------------------------------------
// A tenants file in and out (scripts/tenants.ts)

/**
 * Seeds the database from a tenants file, in one transaction: every tenant with its
 * settings and its key hashes (their keys are not known: no prefix). A tenant id or a
 * key hash already in the database fails the whole import, so that nothing is half done.
 */
export async function importTenants (pool: pg.Pool, context: AuditContext, definitions: readonly TenantDefinition[], newKeyId: () => string): Promise<{ tenants: number, keys: number }> {
  return await inTransaction(pool, async (client) => {
    let keys = 0
    for (const { id, keys: hashes, ...settings } of definitions) {
      let row: TenantRow
      try {
        const result = await client.query<TenantRecord>(`INSERT INTO tenants (id, settings) VALUES ($1, $2) RETURNING ${tenantColumns}`, [id, JSON.stringify(settings)])
        row = tenantOf(result.rows[0] as TenantRecord)
      } catch (error) {
        if (isUniqueViolation(error)) throw new TenantExistsError(`tenant "${id}" already exists in the database`, { cause: error })
        throw error
      }
      await insertAudit(client, context, { action: 'tenant.import', tenantId: id, before: null, after: auditTenant(row) })
      for (const keyHash of hashes) {
        let key: KeyRow
        try {
          const result = await client.query<KeyRecord>(`INSERT INTO tenant_keys (id, tenant_id, key_hash, label) VALUES ($1, $2, $3, 'imported') RETURNING ${keyColumns}`, [newKeyId(), id, keyHash])
          key = keyOf(result.rows[0] as KeyRecord)
        } catch (error) {
          if (isUniqueViolation(error)) throw new TenantExistsError(`tenant "${id}": a key hash is already in the database`, { cause: error })
          throw error
        }
        await insertAudit(client, context, { action: 'key.import', tenantId: id, keyId: key.id, before: null, after: auditKey(key) })
        keys += 1
      }
    }
    return { tenants: definitions.length, keys }
  })
}
