import type { Redis } from 'ioredis'
import { defineScript } from './redis-script.ts'

/**
 * Ids waiting for a time, claimed with a lease: the queue under the webhook
 * relay and the archive. A claim moves the id's due time to the end of its
 * lease, so no other claimer gets it before, and if the claimer dies mid-work
 * the lease runs out and the id comes back by itself. Finishing is
 * `remove` (done) or `schedule` (again, later); a claimer that stops without
 * finishing hands the id back (`release`), so that another takes it at once.
 */
export interface DueQueue {
  /** queues the id for `atMs`, or moves it there */
  schedule (id: string, atMs: number): Promise<void>
  remove (id: string): Promise<void>
  /** ids due at `nowMs` (at most `limit`), each leased until `nowMs + leaseMs` */
  claimDue (nowMs: number, leaseMs: number, limit: number): Promise<string[]>
  /**
   * Hands a lease back: the id is due at `dueAt` again, if it is still under the
   * lease that ended at `leaseUntil` (the claim's `nowMs + leaseMs`). An id that was
   * finished, rescheduled or claimed again meanwhile is left as it is. True: handed back.
   */
  release (id: string, lease: { leaseUntil: number, dueAt: number }): Promise<boolean>
  /** the earliest due time queued (null: none) */
  nextDueAt (): Promise<number | null>
  /** ids queued, due or not */
  size (): Promise<number>
}

export function createMemoryDueQueue (): DueQueue {
  const due = new Map<string, number>()
  return {
    async schedule (id, atMs) { due.set(id, atMs) },
    async remove (id) { due.delete(id) },
    async claimDue (nowMs, leaseMs, limit) {
      const claimed: string[] = []
      for (const [id, at] of due) {
        if (claimed.length >= limit) break
        if (at > nowMs) continue
        due.set(id, nowMs + leaseMs)
        claimed.push(id)
      }
      return claimed
    },
    async release (id, lease) {
      if (due.get(id) !== lease.leaseUntil) return false
      due.set(id, lease.dueAt)
      return true
    },
    async nextDueAt () {
      let earliest: number | null = null
      for (const at of due.values()) if (earliest === null || at < earliest) earliest = at
      return earliest
    },
    async size () { return due.size }
  }
}

// Takes the due ids and pushes each one's score to the end of its lease, in one
// step: two instances polling at once never both get the same id.
const claimScript = `
local ids = redis.call('zrangebyscore', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do redis.call('zadd', KEYS[1], ARGV[2], id) end
return ids`

// The score is the lease: only the claimer's own lease (its end, to the millisecond) is handed back.
const releaseScript = `
local score = redis.call('zscore', KEYS[1], ARGV[1])
if score and tonumber(score) == tonumber(ARGV[2]) then
  redis.call('zadd', KEYS[1], ARGV[3], ARGV[1])
  return 1
end
return 0`

/** One sorted set of due times, shared by every instance. */
export function createRedisDueQueue (options: { redis: Redis, key: string }): DueQueue {
  const { redis, key } = options
  const claim = defineScript(redis, { name: 'vgClaimDue', lua: claimScript, numberOfKeys: 1 })
  const release = defineScript(redis, { name: 'vgReleaseDue', lua: releaseScript, numberOfKeys: 1 })
  return {
    async schedule (id, atMs) { await redis.zadd(key, atMs, id) },
    async remove (id) { await redis.zrem(key, id) },
    async claimDue (nowMs, leaseMs, limit) { return await claim(key, nowMs, nowMs + leaseMs, limit) as string[] },
    async release (id, lease) { return await release(key, id, lease.leaseUntil, lease.dueAt) === 1 },
    async nextDueAt () {
      const [, score] = await redis.zrange(key, 0, 0, 'WITHSCORES')
      return score === undefined ? null : Number(score)
    },
    async size () { return await redis.zcard(key) }
  }
}
