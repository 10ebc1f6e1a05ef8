import { randomUUID } from 'node:crypto'
import type { Redis } from 'ioredis'
import { LRUCache } from 'lru-cache'
import type { TaskSnapshot } from './snapshot.ts'
import { compareAndDeleteLua, defineScript } from '../store/redis-script.ts'

/**
 * Where task snapshots are kept between reads, keyed by the upstream task id.
 * The key is the upstream id, not the tenant's id: the route reaches it only
 * after the tenant-scoped id was verified (task-ids.ts), so one tenant can
 * never name another's entry, and every answer is re-scoped on the way out.
 *
 * `claim` lets one caller among several instances fetch a task while the others
 * wait for the snapshot it stores (Redis); in one process it always succeeds:
 * the reader's in-process single-flight does that job there.
 */
export interface TaskCache {
  get (upstreamId: string): Promise<TaskSnapshot | undefined>
  /** the same as get, synchronously, where the store is in this process (no promise on a poll's hot path) */
  peek?: (upstreamId: string) => TaskSnapshot | undefined
  set (upstreamId: string, snapshot: TaskSnapshot, ttlMs: number): Promise<void>
  /** a claim: the caller fetches and then releases it; null: another instance is fetching it now */
  claim (upstreamId: string, ttlMs: number): Promise<Claim | null>
}

export interface Claim {
  release (): Promise<void>
}

const noClaim: Claim = { release: async () => {} }

export function createMemoryTaskCache (options: { maxEntries: number, now?: () => number }): TaskCache {
  const entries = new LRUCache<string, TaskSnapshot>({ max: options.maxEntries, perf: { now: options.now ?? Date.now }, ttlResolution: 0 })
  return {
    async get (upstreamId) { return entries.get(upstreamId) },
    peek (upstreamId) { return entries.get(upstreamId) },
    async set (upstreamId, snapshot, ttlMs) { entries.set(upstreamId, snapshot, { ttl: ttlMs }) },
    async claim () { return noClaim }
  }
}

// Deletes the claim only if it is still ours: a claim that expired under a slow
// fetch may have been taken by another instance meanwhile.

/**
 * Redis: snapshots shared by every instance, claims with SET NX PX. When Redis
 * fails, reads still work, only without sharing: a failed get is a miss and a
 * failed claim is granted (each instance then asks the upstream itself, still
 * at most once per TTL thanks to its own single-flight).
 */
export function createRedisTaskCache (options: { redis: Redis, keyPrefix: string }): TaskCache {
  const { redis } = options
  const prefix = options.keyPrefix
  const releaseClaim = defineScript(redis, { name: 'vgTaskClaimRelease', lua: compareAndDeleteLua, numberOfKeys: 1 })
  return {
    async get (upstreamId) {
      const stored = await redis.get(prefix + upstreamId).catch(() => null)
      if (stored === null) return undefined
      try {
        return JSON.parse(stored) as TaskSnapshot
      } catch {
        return undefined
      }
    },
    async set (upstreamId, snapshot, ttlMs) {
      await redis.set(prefix + upstreamId, JSON.stringify(snapshot), 'PX', ttlMs).catch(() => {})
    },
    async claim (upstreamId, ttlMs) {
      const key = `${prefix}claim:${upstreamId}`
      const token = randomUUID()
      let granted: string | null
      try {
        granted = await redis.set(key, token, 'PX', ttlMs, 'NX')
      } catch {
        return noClaim
      }
      if (granted === null) return null
      return { release: async () => { await releaseClaim(key, token).catch(() => {}) } }
    }
  }
}
