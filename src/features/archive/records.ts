import type { Redis } from 'ioredis'
import { LRUCache } from 'lru-cache'
import { createMemoryDueQueue, createRedisDueQueue, type DueQueue } from '../store/due-queue.ts'

/** One archived video: where it is and what was recorded on the way in. */
export interface ArchivedObject {
  index: number
  key: string
  size: number
  /** hex SHA-256 of the bytes, computed while they streamed in */
  sha256: string
  contentType: string
}

/**
 * - `pending`: queued or being downloaded (retries included)
 * - `archived`: every result is stored
 * - `failed`: gave up (the upstream links' 24 h passed, or a download can never succeed)
 * - `erased`: deleted on request; never archived again
 * - `expired`: deleted by the retention sweep
 */
export type ArchiveStatus = 'pending' | 'archived' | 'failed' | 'erased' | 'expired'

/** The archive of one task (one per task, whatever the number of its results). */
export interface ArchiveRecord {
  tenantId: string
  upstreamTaskId: string
  status: ArchiveStatus
  /** the upstream's result URLs, as the finished task listed them */
  sources: string[]
  /** stored so far, by index */
  objects: ArchivedObject[]
  attempts: number
  /** why the last attempt failed (or why the archive failed) */
  lastError: string | null
  createdAt: number
  updatedAt: number
  /** the upstream's links die then: past it, the archive fails */
  sourcesExpireAt: number
  archivedAt: number | null
  /** the retention sweep deletes the objects then (null: kept until erased) */
  retainUntil: number | null
}

/**
 * Archive records, the queue of due jobs and the queue of retention
 * deadlines. With Redis every instance shares them (one archive per task
 * across replicas; a job whose instance died comes back when its lease runs
 * out); in memory they die with the process.
 */
export interface ArchiveRecords {
  /** stores the record unless the task has one: `created` false returns the existing one */
  create (record: ArchiveRecord, ttlMs: number): Promise<{ created: boolean, record: ArchiveRecord }>
  get (upstreamTaskId: string): Promise<ArchiveRecord | null>
  save (record: ArchiveRecord, ttlMs: number): Promise<void>
  /** jobs: ids (upstream task ids) due for a download attempt */
  readonly jobs: DueQueue
  /** retention: ids whose objects are due for deletion */
  readonly retention: DueQueue
}

export function createMemoryArchiveRecords (options: { now: () => number, maxEntries?: number }): ArchiveRecords {
  const records = new LRUCache<string, ArchiveRecord>({ max: options.maxEntries ?? 10_000, perf: { now: options.now }, ttlResolution: 0 })
  const copy = (record: ArchiveRecord): ArchiveRecord => structuredClone(record)
  return {
    async create (record, ttlMs) {
      const existing = records.get(record.upstreamTaskId)
      if (existing !== undefined) return { created: false, record: copy(existing) }
      records.set(record.upstreamTaskId, copy(record), { ttl: ttlMs })
      return { created: true, record: copy(record) }
    },
    async get (upstreamTaskId) {
      const record = records.get(upstreamTaskId)
      return record === undefined ? null : copy(record)
    },
    async save (record, ttlMs) { records.set(record.upstreamTaskId, copy(record), { ttl: ttlMs }) },
    jobs: createMemoryDueQueue(),
    retention: createMemoryDueQueue()
  }
}

export function createRedisArchiveRecords (options: { redis: Redis, keyPrefix: string }): ArchiveRecords {
  const { redis, keyPrefix } = options
  const recordKey = (upstreamTaskId: string): string => `${keyPrefix}record:${upstreamTaskId}`
  const parse = (text: string | null): ArchiveRecord | null => {
    if (text === null) return null
    try {
      return JSON.parse(text) as ArchiveRecord
    } catch {
      return null
    }
  }
  return {
    async create (record, ttlMs) {
      const won = await redis.set(recordKey(record.upstreamTaskId), JSON.stringify(record), 'PX', ttlMs, 'NX')
      if (won !== null) return { created: true, record }
      const existing = parse(await redis.get(recordKey(record.upstreamTaskId)))
      if (existing !== null) return { created: false, record: existing }
      // Expired between the two calls: the task has no record any more, so this one is it.
      await redis.set(recordKey(record.upstreamTaskId), JSON.stringify(record), 'PX', ttlMs)
      return { created: true, record }
    },
    async get (upstreamTaskId) { return parse(await redis.get(recordKey(upstreamTaskId))) },
    async save (record, ttlMs) { await redis.set(recordKey(record.upstreamTaskId), JSON.stringify(record), 'PX', ttlMs) },
    jobs: createRedisDueQueue({ redis, key: `${keyPrefix}due` }),
    retention: createRedisDueQueue({ redis, key: `${keyPrefix}retention` })
  }
}
