import { randomUUID } from 'node:crypto'
import { LRUCache } from 'lru-cache'

/**
 * Where Idempotency-Key records live: one per (tenant, key). A record is first
 * `in-flight` (claimed by the request that is being processed, with a short
 * lock lifetime so that a crashed instance cannot block a key for a day), then
 * either `done` (the answer, replayed for `ttlMs`) or gone again (released, so
 * that a retry can go through).
 *
 * Two implementations: memory (one instance; bounded, with expiry) and Redis
 * (any number of instances; see ./redis.ts).
 */
export interface StoredResponse {
  statusCode: number
  contentType: string
  /** the body exactly as it was sent */
  body: string
  /** the request that produced it (logged with each replay) */
  requestId: string
}

/** A successful claim: what complete() and release() need to touch only their own record. */
export interface IdempotencyClaim {
  key: string
  /** the exact in-flight record written by this claim (it holds a random token) */
  lock: string
}

export type ClaimOutcome =
  | { kind: 'claimed', claim: IdempotencyClaim }
  /** another request holds the key right now */
  | { kind: 'in-flight' }
  /** the key was used with another body */
  | { kind: 'mismatch' }
  /** the key was used with this body: its answer */
  | { kind: 'replay', response: StoredResponse }

export interface IdempotencyStore {
  /** claims `key` for a request whose body has `fingerprint`, or says why not */
  claim (key: string, fingerprint: string): Promise<ClaimOutcome>
  /** stores the answer under a key this claim still holds (a lost lock stores nothing) */
  complete (claim: IdempotencyClaim, response: StoredResponse): Promise<void>
  /** frees a key this claim still holds, so that a retry can go through */
  release (claim: IdempotencyClaim): Promise<void>
}

export interface IdempotencyLifetimes {
  /** how long a done record (the answer) is kept */
  ttlMs: number
  /** how long an in-flight claim holds the key if its request never finishes */
  lockTtlMs: number
}

/** The stored text of a record; the same in memory and in Redis. */
export type IdempotencyRecord =
  | { s: 'in-flight', f: string, t: string }
  | { s: 'done', f: string, r: StoredResponse }

export function inFlightRecord (fingerprint: string): string {
  return JSON.stringify({ s: 'in-flight', f: fingerprint, t: randomUUID() } satisfies IdempotencyRecord)
}

export function doneRecord (fingerprint: string, response: StoredResponse): string {
  return JSON.stringify({ s: 'done', f: fingerprint, r: response } satisfies IdempotencyRecord)
}

/** What an existing record means for a request with `fingerprint`. */
export function outcomeOf (stored: string, fingerprint: string): Exclude<ClaimOutcome, { kind: 'claimed' }> {
  const record = JSON.parse(stored) as IdempotencyRecord
  if (record.f !== fingerprint) return { kind: 'mismatch' }
  if (record.s === 'in-flight') return { kind: 'in-flight' }
  return { kind: 'replay', response: record.r }
}

export interface MemoryIdempotencyStoreOptions extends IdempotencyLifetimes {
  /** most records kept; past it the least recently written go first */
  maxKeys: number
  /** clock, ms (tests) */
  now?: () => number
}

/**
 * One instance's records in an LRU with a lifetime per record: expired records
 * are never answered, and the least recently used go first when it is full, so
 * memory stays bounded whatever callers send.
 */
export function createMemoryIdempotencyStore (options: MemoryIdempotencyStoreOptions): IdempotencyStore {
  const { ttlMs, lockTtlMs, maxKeys } = options
  const now = options.now ?? Date.now
  // ttlResolution 0: expiry is judged by the clock of each call (a day-long TTL needs no cached `now`).
  const records = new LRUCache<string, string>({ max: maxKeys, perf: { now }, ttlResolution: 0 })

  function live (key: string): string | undefined {
    return records.get(key)
  }

  function write (key: string, text: string, lifetimeMs: number): void {
    records.set(key, text, { ttl: lifetimeMs })
  }

  return {
    async claim (key, fingerprint) {
      const existing = live(key)
      if (existing !== undefined) return outcomeOf(existing, fingerprint)
      const lock = inFlightRecord(fingerprint)
      write(key, lock, lockTtlMs)
      return { kind: 'claimed', claim: { key, lock } }
    },
    async complete (claim, response) {
      if (live(claim.key) !== claim.lock) return
      const { f } = JSON.parse(claim.lock) as IdempotencyRecord
      write(claim.key, doneRecord(f, response), ttlMs)
    },
    async release (claim) {
      if (live(claim.key) === claim.lock) records.delete(claim.key)
    }
  }
}
