import type { Redis } from 'ioredis'
import { doneRecord, inFlightRecord, outcomeOf, type IdempotencyLifetimes, type IdempotencyRecord, type IdempotencyStore } from './memory.ts'
import { compareAndDeleteLua, defineScript } from '../../store/redis-script.ts'

/**
 * Idempotency records shared by every instance. The claim is one atomic
 * `SET key <in-flight> NX PX <lock ttl>`: of any number of requests with the
 * same key, on any replicas, exactly one gets OK. complete() and release() are
 * compare-and-set scripts: they touch the record only while it is still this
 * claim's own in-flight record (its random token), so a request whose lock
 * expired can never overwrite or delete a newer claim.
 *
 * Redis failures are thrown: the caller fails closed (503) rather than risk
 * running a request twice.
 */
const completeScript = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0`

/** SET NX and GET are two commands: a record can expire between them. Retry that, a bounded number of times. */
const claimRounds = 3

export interface RedisIdempotencyStoreOptions extends IdempotencyLifetimes {
  redis: Redis
  /** the key map's `idempotency` namespace */
  keyPrefix: string
}

export function createRedisIdempotencyStore (options: RedisIdempotencyStoreOptions): IdempotencyStore {
  const { redis, keyPrefix, ttlMs, lockTtlMs } = options
  const completeClaim = defineScript(redis, { name: 'vgIdempotencyComplete', lua: completeScript, numberOfKeys: 1 })
  const releaseClaim = defineScript(redis, { name: 'vgIdempotencyRelease', lua: compareAndDeleteLua, numberOfKeys: 1 })
  return {
    async claim (key, fingerprint) {
      const redisKey = keyPrefix + key
      const lock = inFlightRecord(fingerprint)
      for (let round = 0; round < claimRounds; round++) {
        if (await redis.set(redisKey, lock, 'PX', lockTtlMs, 'NX') === 'OK') return { kind: 'claimed', claim: { key, lock } }
        const existing = await redis.get(redisKey)
        if (existing !== null) return outcomeOf(existing, fingerprint)
      }
      // Claimed and freed over and over by others in the meantime: someone is working on it.
      return { kind: 'in-flight' }
    },
    async complete (claim, response) {
      const { f } = JSON.parse(claim.lock) as IdempotencyRecord
      await completeClaim(keyPrefix + claim.key, claim.lock, doneRecord(f, response), ttlMs)
    },
    async release (claim) {
      await releaseClaim(keyPrefix + claim.key, claim.lock)
    }
  }
}
