import type { TaskIndexWrite } from './redis.ts'

/**
 * The per-tenant index of tasks: which tasks a tenant created, newest or
 * oldest first, for listings (GET /v1/videos) and for the fields a dialect
 * answers with that the upstream task lacks. Every create is indexed, whatever
 * its dialect. Two backends behind this contract (memory here, Redis in
 * redis.ts), one contract test over both.
 */

/** What the index keeps of a create beside its id (as the caller asked, before upstream defaults). */
export interface TaskIndexAttributes {
  /** the model as the caller named it (an alias stays an alias) */
  model: string
  prompt: string
  /** seconds of each video, as a string ("4") */
  seconds: string
  aspectRatio: string | null
  quality: string
}

export interface TaskIndexEntry {
  /** the tenant-scoped task id */
  id: string
  /** ms since the epoch */
  createdAt: number
  /** the index order: creation ms × 1000 plus a per-instance counter, so that creates within one ms keep their order */
  rank: number
  attributes: TaskIndexAttributes
}

export interface TaskIndexPage {
  entries: TaskIndexEntry[]
  /** more entries follow the last one in this order */
  hasMore: boolean
}

export interface TaskIndexListOptions {
  /** start after this id (exclusive); unknown: the page is null */
  after?: string
  limit: number
  order: 'asc' | 'desc'
}

export interface TaskIndexStore {
  add (tenantId: string, entry: TaskIndexEntry): Promise<void>
  /** Redis only: the add as keys and arguments, for a script that carries it (the usage store's settlement) */
  writeOf? (tenantId: string, entry: TaskIndexEntry): TaskIndexWrite
  get (tenantId: string, id: string): Promise<TaskIndexEntry | null>
  /** null when `after` is not in this tenant's index */
  list (tenantId: string, options: TaskIndexListOptions): Promise<TaskIndexPage | null>
  /** whether it was there */
  remove (tenantId: string, id: string): Promise<boolean>
}

export interface TaskIndexLimits {
  /** entries kept per tenant: the oldest go first */
  maxEntriesPerTenant: number
  /** entries older than this are dropped (ms) */
  retentionMs: number
  now: () => number
}

/** Index order: rank, then id (as Redis orders equal scores: by bytes). */
function compare (a: TaskIndexEntry, b: TaskIndexEntry): number {
  if (a.rank !== b.rank) return a.rank - b.rank
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0
}

/**
 * The store's own copy of an entry, so that no caller's object is kept or
 * handed out. By hand, not structuredClone(): the entry is flat (primitives and
 * one object of primitives), and structuredClone's serialisation cost ~7 µs of
 * every create under load (profiled), the largest single item of a create.
 */
function copyEntry (entry: TaskIndexEntry): TaskIndexEntry {
  return { ...entry, attributes: { ...entry.attributes } }
}

/**
 * One instance's index, lost on restart: a sorted array per tenant (creates
 * arrive nearly in order, so an insert is a push) bounded by
 * `maxEntriesPerTenant` and retention, trimmed on every add (as in Redis).
 */
export function createMemoryTaskIndexStore (limits: TaskIndexLimits): TaskIndexStore {
  const byTenant = new Map<string, { sorted: TaskIndexEntry[], byId: Map<string, TaskIndexEntry> }>()

  function tenantIndex (tenantId: string): { sorted: TaskIndexEntry[], byId: Map<string, TaskIndexEntry> } {
    let index = byTenant.get(tenantId)
    if (index === undefined) {
      index = { sorted: [], byId: new Map() }
      byTenant.set(tenantId, index)
    }
    return index
  }

  function expire (index: { sorted: TaskIndexEntry[], byId: Map<string, TaskIndexEntry> }): void {
    const oldest = limits.now() - limits.retentionMs
    let drop = Math.max(0, index.sorted.length - limits.maxEntriesPerTenant)
    while (drop < index.sorted.length && index.sorted[drop]!.createdAt < oldest) drop++
    for (const entry of index.sorted.splice(0, drop)) index.byId.delete(entry.id)
  }

  function remove (index: { sorted: TaskIndexEntry[], byId: Map<string, TaskIndexEntry> }, id: string): boolean {
    const entry = index.byId.get(id)
    if (entry === undefined) return false
    index.byId.delete(id)
    index.sorted.splice(index.sorted.indexOf(entry), 1)
    return true
  }

  return {
    async add (tenantId, entry) {
      const index = tenantIndex(tenantId)
      remove(index, entry.id)
      const copy = copyEntry(entry)
      let at = index.sorted.length
      while (at > 0 && compare(index.sorted[at - 1]!, copy) > 0) at--
      index.sorted.splice(at, 0, copy)
      index.byId.set(copy.id, copy)
      expire(index)
    },
    async get (tenantId, id) {
      const entry = byTenant.get(tenantId)?.byId.get(id)
      return entry === undefined ? null : copyEntry(entry)
    },
    async list (tenantId, options) {
      const index = tenantIndex(tenantId)
      const ordered = options.order === 'asc' ? index.sorted : [...index.sorted].reverse()
      let start = 0
      if (options.after !== undefined) {
        const after = index.byId.get(options.after)
        if (after === undefined) return null
        start = ordered.indexOf(after) + 1
      }
      const page = ordered.slice(start, start + options.limit)
      return { entries: page.map(copyEntry), hasMore: start + options.limit < ordered.length }
    },
    async remove (tenantId, id) {
      const index = byTenant.get(tenantId)
      return index === undefined ? false : remove(index, id)
    }
  }
}
