import t, { type Test } from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import { createMemoryIdempotencyStore, type IdempotencyStore, type StoredResponse } from '../../../../src/features/idempotency/store/memory.ts'
import { createRedisIdempotencyStore } from '../../../../src/features/idempotency/store/redis.ts'
import { canonicalJson, requestFingerprint } from '../../../../src/features/idempotency/fingerprint.ts'
import { redisForTests } from '../../../helpers/redis.ts'

const response: StoredResponse = { statusCode: 200, contentType: 'application/json; charset=utf-8', body: '{"id":"x"}', requestId: 'r1' }

t.test('canonical JSON and the fingerprint', async (t) => {
  t.equal(canonicalJson({ b: 1, a: { d: [3, { f: 1, e: 2 }], c: null } }), '{"a":{"c":null,"d":[3,{"e":2,"f":1}]},"b":1}')
  t.equal(requestFingerprint({ a: 1, b: 'x' }), requestFingerprint({ b: 'x', a: 1 }), 'key order does not matter')
  t.not(requestFingerprint({ a: [1, 2] }), requestFingerprint({ a: [2, 1] }), 'array order does')
  t.not(requestFingerprint({ a: 1 }), requestFingerprint({ a: '1' }), 'types do')
  t.match(requestFingerprint({}), /^[0-9a-f]{64}$/)
})

/** The same contract, whichever store. */
async function contract (t: Test, store: IdempotencyStore, prefix: string, waitPastLock: () => Promise<void>): Promise<void> {
  const claimed = await store.claim(`${prefix}:a`, 'fp1')
  if (claimed.kind !== 'claimed') throw new Error('expected a claim')
  t.same(await store.claim(`${prefix}:a`, 'fp1'), { kind: 'in-flight' })
  t.same(await store.claim(`${prefix}:a`, 'fp2'), { kind: 'mismatch' }, 'another body, even while in flight')
  await store.complete(claimed.claim, response)
  t.same(await store.claim(`${prefix}:a`, 'fp1'), { kind: 'replay', response })
  t.same(await store.claim(`${prefix}:a`, 'fp2'), { kind: 'mismatch' })

  const released = await store.claim(`${prefix}:b`, 'fp1')
  if (released.kind !== 'claimed') throw new Error('expected a claim')
  await store.release(released.claim)
  t.equal((await store.claim(`${prefix}:b`, 'fp1')).kind, 'claimed', 'a released key can be claimed again')

  // A claim whose lock expired and was taken over can neither store nor release.
  const stale = await store.claim(`${prefix}:c`, 'fp1')
  if (stale.kind !== 'claimed') throw new Error('expected a claim')
  await waitPastLock()
  const fresh = await store.claim(`${prefix}:c`, 'fp1')
  t.equal(fresh.kind, 'claimed', 'an expired lock frees the key')
  await store.complete(stale.claim, response)
  await store.release(stale.claim)
  t.same(await store.claim(`${prefix}:c`, 'fp1'), { kind: 'in-flight' }, 'the stale claim changed nothing')
}

t.test('memory store', async (t) => {
  let now = 1_000_000
  const store = createMemoryIdempotencyStore({ ttlMs: 10_000, lockTtlMs: 100, maxKeys: 3, now: () => now })
  await contract(t, store, 'm', async () => { now += 101 })
  const done = await store.claim('d', 'fp')
  if (done.kind !== 'claimed') throw new Error('expected a claim')
  await store.complete(done.claim, response)
  now += 9_999
  t.equal((await store.claim('d', 'fp')).kind, 'replay')
  now += 2
  t.equal((await store.claim('d', 'fp')).kind, 'claimed', 'expired after ttlMs')
  // maxKeys 3: the fourth claim pushes out the least recently used, whose key is free again.
  for (const key of ['e', 'f', 'g', 'h']) await store.claim(key, 'fp')
  t.same(await store.claim('h', 'fp'), { kind: 'in-flight' }, 'the newest is kept')
  t.same(await store.claim('f', 'fp'), { kind: 'in-flight' }, 'and the two before it')
  t.equal((await store.claim('e', 'fp')).kind, 'claimed', 'bounded: the oldest went first')
})

const redis = await redisForTests()
t.test('Redis store', { skip: 'skip' in redis ? redis.skip : false }, async (t) => {
  if ('skip' in redis) return
  const client = new Redis(redis.url)
  t.teardown(() => client.quit())
  const prefix = `test-${process.pid}-${Date.now()}`
  // A lock long enough for a loaded machine, short enough to wait out.
  const store = createRedisIdempotencyStore({ redis: client, keyPrefix: 'vg:idem:', ttlMs: 10_000, lockTtlMs: 400 })
  await contract(t, store, prefix, () => sleep(450))
  t.ok(await client.pttl(`vg:idem:${prefix}:a`) > 9_000, 'a done record lives ttlMs')
  t.ok(await client.pttl(`vg:idem:${prefix}:c`) <= 400, 'an in-flight one only lockTtlMs')

  t.test('of many simultaneous claims, exactly one wins', async (t) => {
    const outcomes = await Promise.all(Array.from({ length: 50 }, () => store.claim(`${prefix}:race`, 'fp')))
    t.equal(outcomes.filter((outcome) => outcome.kind === 'claimed').length, 1)
    t.equal(outcomes.filter((outcome) => outcome.kind === 'in-flight').length, 49)
  })

  t.test('a Redis that fails makes the store throw (the caller fails closed)', async (t) => {
    const broken = new Redis('redis://127.0.0.1:1', { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null })
    broken.on('error', () => {})
    const failing = createRedisIdempotencyStore({ redis: broken, keyPrefix: 'vg:idem:', ttlMs: 10_000, lockTtlMs: 100 })
    await t.rejects(failing.claim('x', 'fp'))
    broken.disconnect()
  })
})
