import { hash } from 'node:crypto'
import { watch, type FSWatcher } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { Counter, Gauge } from 'prom-client'
import { buildTenantRegistry, parseTenantsFile, TenantsFileError, type TenantRegistry } from './registry.ts'

/**
 * The one place the running gateway reads its tenants from. Everything that
 * needs the tenants reads `current` when it needs them (per request, per
 * delivery), never a copy taken at build time, so that a reload is seen at once.
 * A request keeps the Tenant object it authenticated with (`request.tenant`).
 */
export interface TenantRegistryHolder {
  readonly current: TenantRegistry
  /** Swaps the registry for new requests (one assignment: atomic for every reader). */
  replace (next: TenantRegistry): void
  /**
   * Reads the tenants file again and swaps the registry if it is valid and changed.
   * Never throws: a bad file leaves the running tenants, logs at error level what is
   * wrong, and counts a failed reload. Without a file (embedded tenants) it does nothing.
   */
  reload (): Promise<TenantReloadOutcome>
}

export type TenantReloadOutcome = 'ok' | 'failed' | 'unchanged' | 'no-file'

export interface TenantRegistryOptions {
  /** the registry built at start */
  registry: TenantRegistry
  /** TENANTS_FILE, to reload from; null: the tenants were given in code (the simulator's demo tenant, tests) */
  file: string | null
  /** the file's text the registry was built from (its hash tells a no-op touch from a change); null: read it now */
  fileText?: string | null
  /** watch the file's directory and reload on changes (server.ts; default false) */
  watch?: boolean
  /** how long changes settle before a reload (an editor or a ConfigMap swap writes several events) */
  debounceMs?: number
  /** the clock of the last-success gauge (ms) */
  now?: () => number
}

declare module 'fastify' {
  interface FastifyInstance {
    tenantRegistry: TenantRegistryHolder
  }
}

function contentHash (text: string): string {
  return hash('sha256', text, 'hex')
}

async function tenantRegistryPlugin (fastify: FastifyInstance, options: TenantRegistryOptions): Promise<void> {
  const { file } = options
  const now = options.now ?? Date.now
  const log = fastify.log.child({ feature: 'tenants' })
  const reloads = new Counter({
    name: 'vg_tenants_reloads_total',
    help: 'Reloads of the tenants file that read a changed file, by outcome (ok: applied; failed: invalid, the running tenants stay).',
    labelNames: ['outcome'] as const,
    registers: [fastify.metrics.registry]
  })
  // Both series exist from the start, so that an alert on `failed` needs no absent().
  reloads.inc({ outcome: 'ok' }, 0)
  reloads.inc({ outcome: 'failed' }, 0)
  const lastSuccess = new Gauge({
    name: 'vg_tenants_last_reload_success_timestamp_seconds',
    help: 'When the running tenants were last loaded successfully (the start counts), Unix seconds.',
    registers: [fastify.metrics.registry]
  })
  lastSuccess.set(now() / 1000)

  let current = options.registry
  let appliedHash: string | null = null
  if (file !== null) {
    const text = options.fileText ?? await readFile(file, 'utf8').catch(() => null)
    appliedHash = text === null ? null : contentHash(text)
  }
  /** one reload at a time: a SIGHUP during a watched change waits for it */
  let running: Promise<TenantReloadOutcome> | null = null

  async function reloadOnce (path: string): Promise<TenantReloadOutcome> {
    let text: string
    try {
      text = await readFile(path, 'utf8')
    } catch (error) {
      // Mid-swap (a rename or a ConfigMap's symlink flip) the file can be missing for a moment: the next event reloads.
      reloads.inc({ outcome: 'failed' })
      log.error({ file: path, code: (error as NodeJS.ErrnoException).code }, `tenants reload failed, the running tenants stay: TENANTS_FILE: cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? 'error'})`)
      return 'failed'
    }
    const textHash = contentHash(text)
    if (textHash === appliedHash) {
      log.debug({ file: path }, 'tenants file unchanged, nothing to reload')
      return 'unchanged'
    }
    let next: TenantRegistry
    try {
      next = buildTenantRegistry(parseTenantsFile(text, path))
    } catch (error) {
      // Anything else than a TenantsFileError is a bug, but a reload must not take the gateway down either.
      const problem = error instanceof TenantsFileError ? error.message : `TENANTS_FILE: ${path}: ${(error as Error).message}`
      reloads.inc({ outcome: 'failed' })
      log.error({ file: path, problem }, `tenants reload failed, the running tenants stay: ${problem}`)
      return 'failed'
    }
    holder.replace(next)
    appliedHash = textHash
    reloads.inc({ outcome: 'ok' })
    lastSuccess.set(now() / 1000)
    log.info({ file: path, tenants: next.tenants.length }, 'tenants reloaded')
    return 'ok'
  }

  const holder: TenantRegistryHolder = {
    get current () { return current },
    replace (next) { current = next },
    async reload () {
      if (file === null) {
        log.info('tenants reload requested, but the tenants are built in (no TENANTS_FILE): nothing to reload')
        return 'no-file'
      }
      // Chained: a reload asked for during another reads the file again after it.
      const previous = running ?? Promise.resolve('unchanged' as const)
      const next = previous.then(async () => await reloadOnce(file))
      running = next
      try {
        return await next
      } finally {
        if (running === next) running = null
      }
    }
  }
  fastify.decorate('tenantRegistry', holder)

  if (file !== null && options.watch === true) {
    const debounceMs = options.debounceMs ?? 150
    let timer: NodeJS.Timeout | null = null
    // The directory, not the file: an editor's save and a ConfigMap update replace the file (a rename, a
    // `..data` symlink swap), and a watch on the file itself would keep watching the old, unlinked inode.
    // Any event there reloads (after the debounce); the content hash makes unrelated ones cost one read.
    let watcher: FSWatcher | null = null
    try {
      watcher = watch(dirname(file), { persistent: false }, () => {
        if (timer !== null) clearTimeout(timer)
        timer = setTimeout(() => {
          timer = null
          holder.reload().catch(() => {}) // (never rejects: failures are logged and counted)
        }, debounceMs)
      })
      watcher.on('error', (error) => { log.warn({ err: error, file }, 'watching the tenants file failed; SIGHUP still reloads it') })
    } catch (error) {
      log.warn({ err: error, file }, 'cannot watch the tenants file; SIGHUP still reloads it')
    }
    fastify.addHook('onClose', async () => {
      if (timer !== null) clearTimeout(timer)
      watcher?.close()
      await running
    })
  }
}

export default fp(tenantRegistryPlugin, { name: 'tenant-registry', fastify: '5.x', dependencies: ['metrics'] })
