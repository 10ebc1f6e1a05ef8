import type { Redis } from 'ioredis'
import { LRUCache } from 'lru-cache'
import { defineScript } from '../store/redis-script.ts'

/**
 * Creates made under each browser token, for the token's `max_creates` cap:
 * in Redis when configured (every replica counts the same token), in memory
 * otherwise. A count lives as long as its token can be used.
 */
export interface TokenCreateCounter {
  /** counts one more create under the token; resolves with the count, this one included */
  add (tokenId: string, expiresAtMs: number): Promise<number>
  /** takes back a create that did not happen (the upstream refused it) */
  remove (tokenId: string): Promise<void>
}

// INCR, and on the first create set the expiry to the token's own: one round trip, no window
// where a counter exists without an expiry.
const addScript = `
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIREAT', KEYS[1], ARGV[1]) end
return count`

// DECR only an existing counter: an expired one must not come back as -1.
const removeScript = `
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('DECR', KEYS[1]) end
return 0`

export function redisTokenCreateCounter (options: { redis: Redis, keyPrefix: string }): TokenCreateCounter {
  const { redis } = options
  const prefix = options.keyPrefix
  const add = defineScript(redis, { name: 'vgTokenCreateAdd', lua: addScript, numberOfKeys: 1 })
  const remove = defineScript(redis, { name: 'vgTokenCreateRemove', lua: removeScript, numberOfKeys: 1 })
  return {
    async add (tokenId, expiresAtMs) {
      return Number(await add(prefix + tokenId, expiresAtMs))
    },
    async remove (tokenId) {
      await remove(prefix + tokenId)
    }
  }
}

export function memoryTokenCreateCounter (options: { maxTokens: number, now?: () => number }): TokenCreateCounter {
  const now = options.now ?? Date.now
  // Bounded: a flood of tokens forgets the oldest counts first, never grows without end.
  const counts = new LRUCache<string, { count: number, expiresAtMs: number }>({ max: options.maxTokens })
  return {
    async add (tokenId, expiresAtMs) {
      const entry = counts.get(tokenId)
      if (entry === undefined || entry.expiresAtMs <= now()) {
        counts.set(tokenId, { count: 1, expiresAtMs })
        return 1
      }
      entry.count += 1
      return entry.count
    },
    async remove (tokenId) {
      const entry = counts.get(tokenId)
      if (entry !== undefined && entry.count > 0) entry.count -= 1
    }
  }
}
