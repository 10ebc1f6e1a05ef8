import { setTimeout as sleep } from 'node:timers/promises'
import type { TaskCache } from './cache.ts'
import type { TaskSnapshot } from './snapshot.ts'

export interface TaskReaderOptions<Context> {
  cache: TaskCache
  /** asks the upstream (with the context of the read that leads); the snapshot it returns is stored for the others */
  fetch (upstreamId: string, context: Context | undefined): Promise<TaskSnapshot>
  /** a pending or processing snapshot is reused this long */
  statusTtlMs: number
  /** a completed or failed one this long */
  terminalTtlMs: number
  /** longest wait for another instance's fetch (the upstream deadline): past it, fetch anyway */
  claimWaitMs: number
  /** how often a waiting instance looks for the other's snapshot */
  claimPollMs?: number
}

export type TaskRead = TaskSnapshot & {
  /** how this read was served: `miss` asked the upstream, `hit` a fresh snapshot, `shared` another reader's fetch */
  readonly source: 'hit' | 'miss' | 'shared'
}

/**
 * Task reads that do not multiply: a fresh snapshot is reused; concurrent reads
 * of one task in this process share one fetch (single-flight); with a shared
 * cache, one instance fetches while the others wait for its snapshot (a short
 * claim in Redis). So however many clients poll one task, the upstream sees at
 * most about one read of it per `statusTtlMs`.
 */
export function createTaskReader<Context> (options: TaskReaderOptions<Context>): { read (upstreamId: string, context?: Context): Promise<TaskRead>, refresh (upstreamId: string): Promise<TaskSnapshot> } {
  const { cache } = options
  const claimPollMs = options.claimPollMs ?? 20
  const inFlight = new Map<string, Promise<TaskSnapshot>>()

  async function fetchAndStore (upstreamId: string, context: Context | undefined): Promise<TaskSnapshot> {
    const snapshot = await options.fetch(upstreamId, context)
    await cache.set(upstreamId, snapshot, snapshot.terminal ? options.terminalTtlMs : options.statusTtlMs)
    return snapshot
  }

  /**
   * One instance fetches; the others look for its snapshot every claimPollMs,
   * and take the claim over if it is released without one (that fetch failed).
   */
  async function fetchOnce (upstreamId: string, context: Context | undefined): Promise<TaskSnapshot> {
    // Real elapsed time (not the injectable clock, which tests may hold still).
    const giveUpAt = performance.now() + options.claimWaitMs
    for (;;) {
      const claim = await cache.claim(upstreamId, options.claimWaitMs)
      if (claim !== null) {
        try {
          // Another instance may have stored it between this one's miss and this claim
          // (its own claim released just before): then there is nothing left to fetch.
          const stored = await cache.get(upstreamId)
          if (stored !== undefined) return stored
          return await fetchAndStore(upstreamId, context)
        } finally {
          await claim.release()
        }
      }
      // The store's TTL decides freshness (not fetchedAt: instances' clocks differ).
      await sleep(claimPollMs)
      const stored = await cache.get(upstreamId)
      if (stored !== undefined) return stored
      if (performance.now() >= giveUpAt) return await fetchAndStore(upstreamId, context)
    }
  }

  return {
    // Past the cache and the claim: the caller has reason to think the cached status is stale.
    async refresh (upstreamId) { return await fetchAndStore(upstreamId, undefined) },
    async read (upstreamId, context) {
      const cached = cache.peek === undefined ? await cache.get(upstreamId) : cache.peek(upstreamId)
      if (cached !== undefined) return { ...cached, source: 'hit' }
      const running = inFlight.get(upstreamId)
      if (running !== undefined) return { ...await running, source: 'shared' }
      const fetching = fetchOnce(upstreamId, context)
      inFlight.set(upstreamId, fetching)
      try {
        return { ...await fetching, source: 'miss' }
      } finally {
        inFlight.delete(upstreamId)
      }
    }
  }
}
