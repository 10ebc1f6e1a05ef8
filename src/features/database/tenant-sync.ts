import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import pg from 'pg'
import { buildTenantRegistry, type Tenant, type TenantRegistry } from '../tenants/registry.ts'
import type { TenantDefinition } from '../../schemas/tenants.ts'
import { loadTenantSnapshot, recordKeyUse, type KeyRow, type TenantRow, type TenantSnapshot } from '../admin/store.ts'

/** The channel the triggers of the first migration notify, with the changed tenant's id as payload. */
export const tenantsChannel = 'vg_tenants'

export interface TenantSyncOptions {
  /** DATABASE_URL: the listener's own connection (a pooled one would be handed back and stop listening); empty: off */
  databaseUrl: string
  /** DATABASE_REFRESH_MS: the full reload behind the notifications */
  refreshMs: number
  /** how often the keys used since the last time get their `last_used_at` (one UPDATE for all) */
  keyUsageFlushMs?: number
  /** the clock that decides which keys have expired (ms) */
  now?: () => number
}

export interface TenantSync {
  /** Reloads every tenant and key now (after the ones queued); rejects if the database fails. */
  refresh (): Promise<void>
  /** Writes the pending `last_used_at` of keys now (what the minute timer does). */
  flushKeyUsage (): Promise<void>
  /** whether the LISTEN connection is up */
  readonly listening: boolean
}

declare module 'fastify' {
  interface FastifyInstance {
    /** database mode's registry loader (null in file mode and with tenants given in code) */
    tenantSync: TenantSync | null
  }
}

interface TenantState {
  row: TenantRow
  keys: KeyRow[]
}

/** setTimeout's longest delay (about 24.8 days); a later expiry is re-armed by the periodic refresh. */
const maxTimerMs = 2 ** 31 - 1
const reconnectBaseMs = 100
const reconnectMaxMs = 2000
const retryAfterFailureMs = 1000

/**
 * The registry's `byKeyHash`, which also notes which keys were used: the request path's
 * only cost of `last_used_at` is one Set.add, and the database hears of it in a batch.
 * (auth.ts looks keys up with `get`; nothing else does.)
 */
class KeyUseRecordingMap extends Map<string, Tenant> {
  used: Set<string> | null = null

  override get (keyHash: string): Tenant | undefined {
    const tenant = super.get(keyHash)
    if (tenant !== undefined) this.used?.add(keyHash)
    return tenant
  }
}

async function tenantSyncPlugin (fastify: FastifyInstance, options: TenantSyncOptions): Promise<void> {
  const { database } = fastify
  if (database === null || options.databaseUrl === '') {
    fastify.decorate('tenantSync', null)
    return
  }
  const now = options.now ?? Date.now
  const log = fastify.log.child({ feature: 'tenant-sync' })
  const state = new Map<string, TenantState>()
  const usedKeys = new Set<string>()

  let closed = false
  let expiryTimer: NodeJS.Timeout | null = null

  /** The registry of what `state` holds at `now()`: disabled tenants, revoked and expired keys left out. */
  function buildRegistry (): { registry: TenantRegistry, nextExpiryMs: number | null } {
    const nowMs = now()
    let nextExpiryMs: number | null = null
    const definitions: TenantDefinition[] = []
    for (const { row, keys } of state.values()) {
      if (row.disabled) continue
      const hashes: string[] = []
      for (const key of keys) {
        const expiresMs = key.expiresAt?.getTime() ?? null
        if (expiresMs !== null) {
          if (expiresMs <= nowMs) continue
          nextExpiryMs = nextExpiryMs === null ? expiresMs : Math.min(nextExpiryMs, expiresMs)
        }
        hashes.push(key.keyHash)
      }
      // A tenant without a live key is out of the running registry, as a tenant removed from a file.
      if (hashes.length === 0) continue
      definitions.push({ ...row.settings, id: row.id, keys: hashes })
    }
    let registry: TenantRegistry
    try {
      registry = buildTenantRegistry(definitions)
    } catch {
      // Only a row edited by hand can be invalid (the admin API validates before it writes): that
      // tenant is left out, named at error level, and every other tenant is served.
      const valid = definitions.filter((definition) => {
        try {
          buildTenantRegistry([definition])
          return true
        } catch (error) {
          log.error({ tenant: definition.id, problem: (error as Error).message }, `tenant "${definition.id}" in the database is invalid and is not served: ${(error as Error).message.replace(/^tenants\[0\]/, 'settings')}`)
          return false
        }
      })
      registry = buildTenantRegistry(valid)
    }
    const byKeyHash = new KeyUseRecordingMap(registry.byKeyHash)
    byKeyHash.used = usedKeys
    return { registry: { ...registry, byKeyHash }, nextExpiryMs }
  }

  function apply (): void {
    const { registry, nextExpiryMs } = buildRegistry()
    fastify.tenantRegistry.replace(registry)
    if (expiryTimer !== null) clearTimeout(expiryTimer)
    expiryTimer = null
    if (nextExpiryMs !== null && !closed) {
      // The next key to expire leaves the registry at its time, without a query.
      expiryTimer = setTimeout(() => { expiryTimer = null; apply() }, Math.min(Math.max(nextExpiryMs - now(), 0) + 1, maxTimerMs))
      expiryTimer.unref()
    }
  }

  function merge (snapshot: TenantSnapshot, ids: readonly string[] | null): void {
    if (ids === null) state.clear()
    else for (const id of ids) state.delete(id)
    for (const row of snapshot.tenants) state.set(row.id, { row, keys: [] })
    for (const key of snapshot.keys) state.get(key.tenantId)?.keys.push(key)
  }

  // One load at a time, in order: a partial load never overwrites a newer full one.
  let chain: Promise<void> = Promise.resolve()
  let fullPending = false
  const idsPending = new Set<string>()
  let scheduled: Promise<void> | null = null
  let retryTimer: NodeJS.Timeout | null = null

  async function runPending (): Promise<void> {
    scheduled = null
    const full = fullPending
    const ids = full ? null : [...idsPending]
    fullPending = false
    idsPending.clear()
    if (!full && ids?.length === 0) return
    try {
      const snapshot = await loadTenantSnapshot(database!.pool, ids ?? undefined)
      merge(snapshot, ids)
      apply()
      database!.recovered()
      log.debug({ full, tenants: ids ?? state.size }, 'tenants loaded from the database')
    } catch (error) {
      database!.failed(error)
      // Nothing is lost: the next attempt reloads everything (what changed meanwhile included).
      fullPending = true
      if (!closed && retryTimer === null) {
        retryTimer = setTimeout(() => { retryTimer = null; schedule().catch(() => {}) }, retryAfterFailureMs)
        retryTimer.unref()
      }
      throw error
    }
  }

  /** Queues the pending work once; every caller until it runs shares that run. */
  function schedule (): Promise<void> {
    if (scheduled !== null) return scheduled
    const run = chain.then(runPending)
    scheduled = run
    chain = run.catch(() => {})
    return run.catch(() => {})
  }

  async function refresh (): Promise<void> {
    fullPending = true
    // A caller that asked for a refresh hears whether it worked.
    if (scheduled !== null) { await scheduled; return }
    const run = chain.then(runPending)
    scheduled = run
    chain = run.catch(() => {})
    await run
  }

  // ---------------------------------------------------------------------------
  // LISTEN: every change, pushed in the transaction that made it.
  let listener: pg.Client | null = null
  let reconnectDelayMs = reconnectBaseMs
  let reconnectTimer: NodeJS.Timeout | null = null

  async function listen (): Promise<void> {
    const client = new pg.Client({ connectionString: options.databaseUrl, keepAlive: true, connectionTimeoutMillis: 2000, application_name: 'video-gateway-listener' })
    let lost = false
    const onLost = (error: unknown): void => {
      if (lost) return
      lost = true
      if (listener === client) listener = null
      client.end().catch(() => {})
      if (closed) return
      database!.failed(error)
      scheduleReconnect()
    }
    client.on('error', onLost)
    client.on('end', () => { onLost(new Error('the listener connection ended')) })
    client.on('notification', (message) => {
      if (message.channel !== tenantsChannel || message.payload === undefined || message.payload === '') return
      idsPending.add(message.payload)
      schedule().catch(() => {})
    })
    try {
      await client.connect()
      await client.query(`LISTEN ${tenantsChannel}`)
    } catch (error) {
      lost = true
      await client.end().catch(() => {})
      throw error
    }
    if (closed) { await client.end().catch(() => {}); return }
    listener = client
  }

  function scheduleReconnect (): void {
    if (closed || reconnectTimer !== null) return
    reconnectTimer = setTimeout(() => {
      reconnectTimer = null
      listen().then(() => {
        reconnectDelayMs = reconnectBaseMs
        log.info('listening to tenant changes again; reloading every tenant (changes made meanwhile)')
        // A failed reload retries on its own (runPending): the listener stays.
        refresh().catch(() => {})
      }, (error: unknown) => {
        database!.failed(error)
        reconnectDelayMs = Math.min(reconnectDelayMs * 2, reconnectMaxMs)
        scheduleReconnect()
      })
    }, reconnectDelayMs)
    reconnectTimer.unref()
  }

  // Listen first, then load: a change committed in between is both loaded and notified, never missed.
  try {
    await listen()
    await refresh()
  } catch (error) {
    closed = true
    await (listener as pg.Client | null)?.end().catch(() => {})
    throw new Error(`DATABASE_URL: cannot load the tenants from PostgreSQL (${(error as Error).message})`, { cause: error })
  }
  log.info({ tenants: state.size, served: fastify.tenantRegistry.current.tenants.length }, 'tenants loaded from the database; listening to changes')

  const refreshTimer = setInterval(() => { refresh().catch(() => {}) }, options.refreshMs)
  refreshTimer.unref()

  // ---------------------------------------------------------------------------
  // last_used_at: at most once a minute per key, one statement, off the request path.
  async function flushKeyUsage (): Promise<void> {
    if (usedKeys.size === 0) return
    const hashes = [...usedKeys]
    usedKeys.clear()
    try {
      await recordKeyUse(database!.pool, hashes, new Date(now()))
    } catch (error) {
      // Kept for the next flush: a last-used time is late, never lost while the process lives.
      for (const keyHash of hashes) usedKeys.add(keyHash)
      database!.failed(error)
      throw error
    }
  }
  const flushTimer = setInterval(() => { flushKeyUsage().catch(() => {}) }, options.keyUsageFlushMs ?? 60_000)
  flushTimer.unref()

  fastify.decorate('tenantSync', {
    refresh,
    flushKeyUsage,
    get listening () { return listener !== null }
  } satisfies TenantSync)

  fastify.addHook('onClose', async () => {
    closed = true
    clearInterval(refreshTimer)
    clearInterval(flushTimer)
    for (const timer of [expiryTimer, retryTimer, reconnectTimer]) if (timer !== null) clearTimeout(timer)
    await flushKeyUsage().catch(() => {})
    await chain
    await listener?.end().catch(() => {})
  })
}

export default fp(tenantSyncPlugin, { name: 'tenant-sync', fastify: '5.x', dependencies: ['database', 'tenant-registry'] })
