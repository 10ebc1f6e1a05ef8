import { randomUUID } from 'node:crypto'
import t, { type Test } from 'tap'
import { Redis } from 'ioredis'
import { createMemoryUsageStore, usageRetentionMs, type AdmissionLimits, type UsageStore } from '../../../../src/features/usage/store/memory.ts'
import { createRedisUsageStore, type RedisUsageStoreOptions } from '../../../../src/features/usage/store/redis.ts'
import { daysBetween, nextUtcDayStart, nextUtcMonthStart, parseUtcDay, utcDay, utcMonth } from '../../../../src/features/usage/windows.ts'
import { createChargeOf } from '../../../../src/features/usage/charge.ts'
import { createWriteBehind } from '../../../../src/features/store/write-behind.ts'
import { createRedisTaskIndexStore } from '../../../../src/features/tasks/index-store/redis.ts'
import { redisForTests } from '../../../helpers/redis.ts'

const redis = await redisForTests()

// 2026-03-31 23:00 UTC: one hour before both the day and the month end.
const lateInMarch = Date.UTC(2026, 2, 31, 23, 0, 0)
const charge = { creditsMilli: 9600, videoSeconds: 4 }
const noLimits: AdmissionLimits = { maxConcurrentTasks: null, budget: null, staleMs: 60_000 }

t.test('UTC windows', async (t) => {
  t.equal(utcDay(lateInMarch), '2026-03-31')
  t.equal(utcMonth(lateInMarch), '2026-03')
  t.equal(nextUtcDayStart(lateInMarch), Date.UTC(2026, 3, 1))
  t.equal(nextUtcMonthStart(lateInMarch), Date.UTC(2026, 3, 1))
  t.equal(nextUtcMonthStart(Date.UTC(2026, 11, 15)), Date.UTC(2027, 0, 1), 'December rolls into the next year')
  t.equal(parseUtcDay('2026-02-30'), null, 'no such day')
  t.equal(parseUtcDay('2026-02-28'), Date.UTC(2026, 1, 28))
  t.same(daysBetween(Date.UTC(2026, 1, 27), Date.UTC(2026, 2, 1)), ['2026-02-27', '2026-02-28', '2026-03-01'])
})

t.test('the charge of a create: video-seconds exact, credits estimated at the upstream\'s rates', async (t) => {
  t.same(createChargeOf({}), { creditsMilli: 9600, videoSeconds: 4 }, '4 s of 720p with audio')
  t.same(createChargeOf({ duration: 8, n: 2, quality: '4k', generate_audio: false }), { creditsMilli: 64000, videoSeconds: 16 })
  t.same(createChargeOf({ generation_type: 'REFERENCE', duration: 4 }), { creditsMilli: 19200, videoSeconds: 8 }, 'REFERENCE is always 8 s')
})

function contract (name: string, makeStore: () => Promise<UsageStore>, skip: string | false): void {
  t.test(`${name} usage store`, { skip }, async (t) => {
    const tenant = () => `store-test-${randomUUID()}`

    t.test('admission checks the concurrency cap, then frees slots as tasks finish or go stale', async (t) => {
      const store = await makeStore()
      const tenantId = tenant()
      const limits = { ...noLimits, maxConcurrentTasks: 2 }
      const first = await store.admit({ tenantId, token: 'a', charge, limits, now: lateInMarch })
      const second = await store.admit({ tenantId, token: 'b', charge, limits, now: lateInMarch })
      t.ok(first.admitted && second.admitted)
      t.same(await store.admit({ tenantId, token: 'c', charge, limits, now: lateInMarch }), { admitted: false, reason: 'concurrency', limit: 2 })
      if (!first.admitted || !second.admitted) return
      await store.settle({ reservation: first.reservation, upstreamTaskId: 'task-1', creditsMilli: null, staleMs: 60_000, now: lateInMarch })
      await store.release(second.reservation)
      t.ok((await store.admit({ tenantId, token: 'd', charge, limits, now: lateInMarch })).admitted, 'a released reservation frees its slot')
      t.same(await store.admit({ tenantId, token: 'e', charge, limits, now: lateInMarch }), { admitted: false, reason: 'concurrency', limit: 2 })
      t.same(await store.finish({ tenantId, upstreamTaskId: 'task-1', outcome: 'completed', finalCreditsMilli: null, now: lateInMarch }), { first: true, creditsDeltaMilli: 0, settledCreditsMilli: 9600 }, 'no final figure: settled at the create\'s charge')
      t.ok((await store.admit({ tenantId, token: 'f', charge, limits, now: lateInMarch })).admitted, 'a finished task frees its slot')
      t.same(await store.admit({ tenantId, token: 'g', charge, limits, now: lateInMarch + 59_999 }), { admitted: false, reason: 'concurrency', limit: 2 })
      t.ok((await store.admit({ tenantId, token: 'h', charge, limits, now: lateInMarch + 60_000 })).admitted, 'past the stale bound, the slots are free')
    })

    t.test('an end user\'s part: requests, creates, video-seconds, credits and task ends, in its own ledger', async (t) => {
      const store = await makeStore()
      const tenantId = tenant()
      const day = utcDay(lateInMarch)
      await store.countRequest({ tenantId, now: lateInMarch, endUser: 'alice' })
      await store.countRequest({ tenantId, now: lateInMarch })
      for (const [token, endUser] of [['a1', 'alice'], ['b1', 'bob'], ['k1', null]] as const) {
        const admission = await store.admit({ tenantId, token, charge, limits: noLimits, now: lateInMarch })
        if (admission.admitted) await store.settle({ reservation: admission.reservation, upstreamTaskId: `task-${token}`, creditsMilli: 5000, staleMs: 60_000, now: lateInMarch, endUser })
      }
      await store.finish({ tenantId, upstreamTaskId: 'task-a1', outcome: 'completed', finalCreditsMilli: 4000, now: lateInMarch })
      await store.finish({ tenantId, upstreamTaskId: 'task-k1', outcome: 'failed', finalCreditsMilli: null, now: lateInMarch })
      const [alice] = await store.report({ tenantId, days: [day], endUser: 'alice' })
      t.same(alice, { date: day, requests: 1, tasksCreated: 1, tasksCompleted: 1, tasksFailed: 0, videoSeconds: charge.videoSeconds, creditsMilli: 4000, archivedVideos: 0, archivedBytes: 0 }, 'corrected to the final credits too')
      const [bob] = await store.report({ tenantId, days: [day], endUser: 'bob' })
      t.same(bob, { date: day, requests: 0, tasksCreated: 1, tasksCompleted: 0, tasksFailed: 0, videoSeconds: charge.videoSeconds, creditsMilli: 5000, archivedVideos: 0, archivedBytes: 0 })
      const [whole] = await store.report({ tenantId, days: [day] })
      t.same(whole, { date: day, requests: 2, tasksCreated: 3, tasksCompleted: 1, tasksFailed: 1, videoSeconds: 3 * charge.videoSeconds, creditsMilli: 14000, archivedVideos: 0, archivedBytes: 0 }, 'the tenant\'s own days hold everyone')
      const [nobody] = await store.report({ tenantId, days: [day], endUser: 'carol' })
      t.same(nobody, { date: day, requests: 0, tasksCreated: 0, tasksCompleted: 0, tasksFailed: 0, videoSeconds: 0, creditsMilli: 0, archivedVideos: 0, archivedBytes: 0 })
    })

    t.test('a tenant without a cap holds no slots (nothing would read them)', async (t) => {
      const store = await makeStore()
      const tenantId = tenant()
      for (const token of ['u1', 'u2', 'u3']) {
        const admission = await store.admit({ tenantId, token, charge, limits: noLimits, now: lateInMarch })
        t.ok(admission.admitted)
        if (admission.admitted) await store.settle({ reservation: admission.reservation, upstreamTaskId: `task-${token}`, creditsMilli: null, staleMs: 60_000, now: lateInMarch })
      }
      // A cap set later (a config change) counts the tasks created under it, not the three above.
      const capped = await store.admit({ tenantId, token: 'c1', charge, limits: { ...noLimits, maxConcurrentTasks: 1 }, now: lateInMarch })
      t.ok(capped.admitted, 'the uncapped tasks took no slot')
      t.same(await store.admit({ tenantId, token: 'c2', charge, limits: { ...noLimits, maxConcurrentTasks: 1 }, now: lateInMarch }), { admitted: false, reason: 'concurrency', limit: 1 })
    })

    t.test('budgets: a create that would pass one is refused, naming it and when it resets', async (t) => {
      const store = await makeStore()
      const tenantId = tenant()
      const limits = { ...noLimits, budget: { creditsPerDay: 20, videoSecondsPerMonth: 100 } }
      t.ok((await store.admit({ tenantId, token: 'a', charge, limits, now: lateInMarch })).admitted)
      t.ok((await store.admit({ tenantId, token: 'b', charge, limits, now: lateInMarch })).admitted, '19.2 of 20 credits')
      t.same(await store.admit({ tenantId, token: 'c', charge, limits, now: lateInMarch }),
        { admitted: false, reason: 'budget', budget: 'creditsPerDay', limit: 20, resetsAt: Date.UTC(2026, 3, 1) })
      const nextDay = Date.UTC(2026, 3, 1, 0, 0, 1)
      t.ok((await store.admit({ tenantId, token: 'd', charge, limits, now: nextDay })).admitted, 'a new UTC day, a new daily budget')
      const monthly = { ...noLimits, budget: { videoSecondsPerMonth: 8 } }
      const other = tenant()
      t.ok((await store.admit({ tenantId: other, token: 'a', charge, limits: monthly, now: lateInMarch })).admitted)
      t.ok((await store.admit({ tenantId: other, token: 'b', charge, limits: monthly, now: lateInMarch })).admitted, 'exactly at the budget is within it')
      t.same(await store.admit({ tenantId: other, token: 'c', charge, limits: monthly, now: lateInMarch }),
        { admitted: false, reason: 'budget', budget: 'videoSecondsPerMonth', limit: 8, resetsAt: Date.UTC(2026, 3, 1) })
    })

    t.test('settle charges the upstream\'s figure, finish corrects it once, the report shows the day', async (t) => {
      const store = await makeStore()
      const tenantId = tenant()
      const limits = { ...noLimits, budget: { creditsPerDay: 30 } }
      const admission = await store.admit({ tenantId, token: 'a', charge, limits, now: lateInMarch })
      if (!admission.admitted) return t.fail('not admitted')
      t.same(await store.settle({ reservation: admission.reservation, upstreamTaskId: 'task-1', creditsMilli: 25_700, staleMs: 60_000, now: lateInMarch }), { creditsMilli: 25_700 })
      t.same(await store.admit({ tenantId, token: 'b', charge, limits, now: lateInMarch }),
        { admitted: false, reason: 'budget', budget: 'creditsPerDay', limit: 30, resetsAt: Date.UTC(2026, 3, 1) }, 'the settled 25.7, not the 9.6 estimate, counts')
      const finishedNextDay = Date.UTC(2026, 3, 1, 1)
      t.same(await store.finish({ tenantId, upstreamTaskId: 'task-1', outcome: 'completed', finalCreditsMilli: 20_000, now: finishedNextDay }), { first: true, creditsDeltaMilli: -5_700, settledCreditsMilli: 20_000 })
      t.same(await store.finish({ tenantId, upstreamTaskId: 'task-1', outcome: 'completed', finalCreditsMilli: 20_000, now: finishedNextDay }), { first: false, creditsDeltaMilli: 0, settledCreditsMilli: null }, 'counted once')
      t.ok((await store.admit({ tenantId, token: 'c', charge, limits, now: lateInMarch })).admitted, '20 + 9.6 fits in 30: the correction went to the create\'s day')
      await store.countRequest({ tenantId, now: lateInMarch })
      await store.countRequest({ tenantId, now: lateInMarch })
      t.same(await store.report({ tenantId, days: ['2026-03-30', '2026-03-31', '2026-04-01'] }), [
        { date: '2026-03-30', requests: 0, tasksCreated: 0, tasksCompleted: 0, tasksFailed: 0, videoSeconds: 0, creditsMilli: 0, archivedVideos: 0, archivedBytes: 0 },
        { date: '2026-03-31', requests: 2, tasksCreated: 1, tasksCompleted: 0, tasksFailed: 0, videoSeconds: 8, creditsMilli: 29_600, archivedVideos: 0, archivedBytes: 0 },
        { date: '2026-04-01', requests: 0, tasksCreated: 0, tasksCompleted: 1, tasksFailed: 0, videoSeconds: 0, creditsMilli: 0, archivedVideos: 0, archivedBytes: 0 }
      ], 'the open reservation (c) counts until settled; the completion counts on the day it was seen')
    })

    t.test('archived videos and bytes add up per day', async (t) => {
      const store = await makeStore()
      const tenantId = tenant()
      await store.countArchived({ tenantId, videos: 1, bytes: 1000, now: lateInMarch })
      await store.countArchived({ tenantId, videos: 2, bytes: 500, now: lateInMarch })
      await store.countArchived({ tenantId, videos: 1, bytes: 7, now: lateInMarch + 86_400_000 })
      t.match(await store.report({ tenantId, days: ['2026-03-31', '2026-04-01'] }), [
        { date: '2026-03-31', archivedVideos: 3, archivedBytes: 1500 },
        { date: '2026-04-01', archivedVideos: 1, archivedBytes: 7 }
      ])
    })

    t.test('a failed task and an unknown one are counted once each', async (t) => {
      const store = await makeStore()
      const tenantId = tenant()
      t.same(await store.finish({ tenantId, upstreamTaskId: 'never-seen', outcome: 'failed', finalCreditsMilli: 5000, now: lateInMarch }), { first: true, creditsDeltaMilli: 0, settledCreditsMilli: 5000 })
      t.same(await store.finish({ tenantId, upstreamTaskId: 'never-seen', outcome: 'failed', finalCreditsMilli: 5000, now: lateInMarch }), { first: false, creditsDeltaMilli: 0, settledCreditsMilli: null })
      t.match(await store.report({ tenantId, days: ['2026-03-31'] }), [{ tasksFailed: 1, creditsMilli: 0, archivedVideos: 0, archivedBytes: 0 }])
    })
  })
}

contract('memory', async () => createMemoryUsageStore(), false)
contract('Redis', async () => {
  if ('skip' in redis) throw new Error('unreachable')
  const client = new Redis(redis.url)
  const keyPrefix = `vg:test-usage:${randomUUID()}:`
  t.teardown(async () => {
    const keys = await client.keys(`${keyPrefix}*`)
    if (keys.length > 0) await client.del(...keys)
    await client.quit()
  })
  return createRedisUsageStore({ redis: client, keyPrefix })
}, 'skip' in redis ? redis.skip : false)

/** A Redis client, a key prefix of its own and a write-behind on that client, all cleaned up by `test`'s teardown. */
async function redisWithWriteBehind (test: { teardown (fn: () => Promise<void>): void }, url: string): Promise<{ client: Redis, keyPrefix: string, writeBehind: ReturnType<typeof createWriteBehind> }> {
  const client = new Redis(url)
  await client.ping()
  const keyPrefix = `vg:test-usage:${randomUUID()}:`
  const writeBehind = createWriteBehind({ redis: client })
  test.teardown(async () => {
    await writeBehind.close()
    const keys = await client.keys(`${keyPrefix}*`)
    if (keys.length > 0) await client.del(...keys)
    await client.quit()
  })
  return { client, keyPrefix, writeBehind }
}

// The production set-up: settlements sent behind the answer, on the client every later read uses.
contract('Redis, settlements behind the answer', async () => {
  if ('skip' in redis) throw new Error('unreachable')
  const { client, keyPrefix, writeBehind } = await redisWithWriteBehind(t, redis.url)
  return createRedisUsageStore({ redis: client, keyPrefix, writeBehind })
}, 'skip' in redis ? redis.skip : false)

t.test('Redis: one script for a create\'s settlement and its index entry; rate limit and admission in one', { skip: 'skip' in redis ? redis.skip : false }, async (t) => {
  if ('skip' in redis) return
  const { client, keyPrefix, writeBehind } = await redisWithWriteBehind(t, redis.url)
  const store = createRedisUsageStore({ redis: client, keyPrefix, writeBehind })
  const index = createRedisTaskIndexStore({ redis: client, keyPrefix: `${keyPrefix}tasks:`, maxEntriesPerTenant: 10, retentionMs: 86_400_000, now: () => lateInMarch })
  const capped: AdmissionLimits = { maxConcurrentTasks: 1, budget: { creditsPerDay: 100 }, staleMs: 60_000 }
  const admit = async (tenantId: string, limits = capped, rateLimit: { key: string, max: number, timeWindowMs: number } | null = null) =>
    await store.admit({ tenantId, token: `reservation:${randomUUID()}`, charge, limits, now: lateInMarch, rateLimit })

  t.test('the settlement carries the index entry; sent again (a retry), it counts nothing twice', async (t) => {
    const tenantId = `store-test-${randomUUID()}`
    const admission = await admit(tenantId)
    if (!admission.admitted) throw new Error('not admitted')
    const entry = { id: 'scoped-1', createdAt: lateInMarch, rank: lateInMarch * 1000 + 1, attributes: { model: 'm', prompt: 'p', seconds: '4', aspectRatio: null, quality: '720p' } }
    const settle = { reservation: admission.reservation, upstreamTaskId: 'task-1', creditsMilli: 12_000, staleMs: 60_000, now: lateInMarch, index: index.writeOf?.(tenantId, entry) ?? null }
    t.same(await store.settle(settle), { creditsMilli: 12_000 })
    t.same(await index.list(tenantId, { limit: 10, order: 'desc' }), { entries: [entry], hasMore: false }, 'indexed by the same script')
    await store.settle(settle)
    await writeBehind.flush()
    t.match(await store.report({ tenantId, days: ['2026-03-31'] }), [{ tasksCreated: 1, creditsMilli: 12_000, videoSeconds: 4 }], 'once')
    t.equal(await client.zcard(`${keyPrefix}{${tenantId}}:inflight`), 1, 'one slot, the task\'s')
  })

  t.test('a task seen finished before its settlement landed holds no slot', async (t) => {
    const tenantId = `store-test-${randomUUID()}`
    const admission = await admit(tenantId)
    if (!admission.admitted) throw new Error('not admitted')
    await store.finish({ tenantId, upstreamTaskId: 'task-early', outcome: 'completed', finalCreditsMilli: null, now: lateInMarch })
    await store.settle({ reservation: admission.reservation, upstreamTaskId: 'task-early', creditsMilli: null, staleMs: 60_000, now: lateInMarch })
    t.equal(await client.zcard(`${keyPrefix}{${tenantId}}:inflight`), 0, 'neither the token nor the id')
    t.ok((await admit(tenantId)).admitted, 'the cap of 1 admits again')
  })

  t.test('the rate limit counts first; a request past it is refused and takes nothing', async (t) => {
    const tenantId = `store-test-${randomUUID()}`
    const rateLimit = { key: `${keyPrefix}rl:{${tenantId}}:POST/create`, max: 1, timeWindowMs: 30_000 }
    const first = await admit(tenantId, noLimits, rateLimit)
    t.match(first, { admitted: true, rateLimit: { current: 1 } })
    t.ok((first.rateLimit?.ttlMs ?? 0) > 29_000 && (first.rateLimit?.ttlMs ?? 0) <= 30_000, 'the window starts with its first request')
    const second = await admit(tenantId, capped, rateLimit)
    t.match(second, { admitted: false, reason: 'rate', max: 1, rateLimit: { current: 2 } })
    t.equal(await client.zcard(`${keyPrefix}{${tenantId}}:inflight`), 0, 'no slot')
    t.match(await store.report({ tenantId, days: ['2026-03-31'] }), [{ creditsMilli: 9600, videoSeconds: 4 }], 'only the first one\'s charge')
    t.ok(await client.pttl(rateLimit.key) > 0, 'the counter expires')
    t.match(await admit(tenantId, noLimits), { admitted: true }, 'without a rate limit nothing is counted')
    t.equal(await client.get(rateLimit.key), '2')
  })
})

t.test('memory: days and months past the retention are dropped when a new day is first counted', async (t) => {
  const store = createMemoryUsageStore()
  const old = Date.UTC(2025, 0, 10, 12)
  await store.countRequest({ tenantId: 'acme', now: old })
  await store.countRequest({ tenantId: 'acme', now: old, endUser: 'alice' })
  const admission = await store.admit({ tenantId: 'acme', token: 'a', charge, limits: noLimits, now: old })
  t.ok(admission.admitted)
  const sameDayLater = old + 60 * 60 * 1000
  await store.countRequest({ tenantId: 'acme', now: sameDayLater })
  t.match(await store.report({ tenantId: 'acme', days: ['2025-01-10'] }), [{ requests: 3 }], 'a known day does not prune')
  const pastRetention = old + usageRetentionMs + 24 * 60 * 60 * 1000
  await store.countRequest({ tenantId: 'other', now: pastRetention })
  t.match(await store.report({ tenantId: 'acme', days: ['2025-01-10'] }), [{ requests: 0, creditsMilli: 0, archivedVideos: 0, archivedBytes: 0 }])
  t.match(await store.report({ tenantId: 'acme', days: ['2025-01-10'], endUser: 'alice' }), [{ requests: 0 }])
  t.match(await store.report({ tenantId: 'other', days: [utcDay(pastRetention)] }), [{ requests: 1 }])
  // The month counter went with it: a budget on it starts from zero.
  const monthly = await store.admit({ tenantId: 'acme', token: 'b', charge, limits: { ...noLimits, budget: { creditsPerMonth: charge.creditsMilli / 1000 } }, now: Date.UTC(2025, 0, 20) + usageRetentionMs * 2 })
  t.ok(monthly.admitted)
})

t.test('Redis: request counts gather in memory and go out in one write', { skip: 'skip' in redis ? redis.skip : false }, async (t) => {
  if ('skip' in redis) return
  const client = new Redis(redis.url)
  const keyPrefix = `vg:test-usage:${randomUUID()}:`
  const dayKey = (tenantId: string, suffix = ''): string => `${keyPrefix}{${tenantId}}:${suffix}day:${utcDay(lateInMarch)}`
  t.teardown(async () => {
    const keys = await client.keys(`${keyPrefix}*`)
    if (keys.length > 0) await client.del(...keys)
    await client.quit()
  })

  /** A store on a client that is not connected yet (and never queues): its first write fails, and starts the connection. */
  const offlineStore = (t: Test, options: Omit<RedisUsageStoreOptions, 'redis' | 'keyPrefix'>): { offline: Redis, store: UsageStore } => {
    const offline = new Redis(redis.url, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0 })
    offline.on('error', () => {})
    t.teardown(() => offline.disconnect())
    return { offline, store: createRedisUsageStore({ redis: offline, keyPrefix, ...options }) }
  }

  t.test('nothing is written before the flush; a report flushes this instance\'s counts first', async (t) => {
    const store = createRedisUsageStore({ redis: client, keyPrefix, requestCountFlushMs: 60_000 })
    for (let i = 0; i < 5; i++) await store.countRequest({ tenantId: 'acme', now: lateInMarch, endUser: i < 2 ? 'alice' : null })
    t.equal(await client.hget(dayKey('acme'), 'requests'), null, 'still in memory')
    t.match(await store.report({ tenantId: 'acme', days: [utcDay(lateInMarch)] }), [{ requests: 5 }])
    t.equal(await client.hget(dayKey('acme'), 'requests'), '5', 'one HINCRBY of 5')
    t.equal(await client.hget(dayKey('acme', 'user:alice:'), 'requests'), '2', 'the end user\'s ledger too')
    t.ok(await client.pttl(dayKey('acme')) > usageRetentionMs - 60_000, 'kept for the retention period')
  })

  t.test('the timer writes them without a report', async (t) => {
    const store = createRedisUsageStore({ redis: client, keyPrefix, requestCountFlushMs: 20 })
    for (let i = 0; i < 3; i++) await store.countRequest({ tenantId: 'timer', now: lateInMarch })
    const deadline = Date.now() + 5000
    while (await client.hget(dayKey('timer'), 'requests') === null && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
    t.equal(await client.hget(dayKey('timer'), 'requests'), '3')
  })

  t.test('a write that fails keeps its counts for the next one', async (t) => {
    const { offline, store } = offlineStore(t, { requestCountFlushMs: 60_000 })
    await store.countRequest({ tenantId: 'blip', now: lateInMarch })
    await store.countRequest({ tenantId: 'blip', now: lateInMarch })
    await t.rejects(store.report({ tenantId: 'blip', days: [utcDay(lateInMarch)] }), 'not connected: the report fails')
    t.equal(await client.hget(dayKey('blip'), 'requests'), null, 'and its flush wrote nothing')
    // (The failed write started the lazy connection.)
    if (offline.status !== 'ready') await new Promise((resolve) => offline.once('ready', resolve))
    await store.countRequest({ tenantId: 'blip', now: lateInMarch })
    t.match(await store.report({ tenantId: 'blip', days: [utcDay(lateInMarch)] }), [{ requests: 3 }], 'the two kept and the new one')
    t.equal(await client.hget(dayKey('blip'), 'requests'), '3')
  })

  t.test('through an outage, the day-hashes waiting to be written are bounded', async (t) => {
    const { offline, store } = offlineStore(t, { requestCountFlushMs: 60_000, maxPendingRequestCounts: 2 })
    await store.countRequest({ tenantId: 'full', now: lateInMarch, endUser: 'alice' })
    await store.countRequest({ tenantId: 'full', now: lateInMarch })
    await t.rejects(store.countRequest({ tenantId: 'other', now: lateInMarch }), { message: 'request count not kept: 2 day-hashes are already waiting to be written to Redis' }, 'a third hash is refused')
    await t.rejects(store.report({ tenantId: 'full', days: [utcDay(lateInMarch)] }), 'not connected: the flush fails and keeps its two hashes')
    await t.rejects(store.countRequest({ tenantId: 'other', now: lateInMarch }), 'still full')
    await store.countRequest({ tenantId: 'full', now: lateInMarch, endUser: 'alice' })
    if (offline.status !== 'ready') await new Promise((resolve) => offline.once('ready', resolve))
    t.match(await store.report({ tenantId: 'full', days: [utcDay(lateInMarch)] }), [{ requests: 3 }], 'a hash already waiting still counts')
    t.equal(await client.hget(dayKey('other'), 'requests'), null, 'the refused hash was never counted')
    await store.countRequest({ tenantId: 'other', now: lateInMarch })
    await store.close()
    t.equal(await client.hget(dayKey('other'), 'requests'), '1', 'written: room again once the others were')
  })

  t.test('close makes the last attempt: what it cannot write is reported, not retried', async (t) => {
    const { offline, store } = offlineStore(t, { requestCountFlushMs: 20 })
    await store.countRequest({ tenantId: 'closing', now: lateInMarch })
    await store.countRequest({ tenantId: 'closing', now: lateInMarch, endUser: 'alice' })
    await t.rejects(store.close(), { message: '3 request counts could not be written to Redis before close' }, 'the tenant\'s two and the end user\'s one')
    if (offline.status !== 'ready') await new Promise((resolve) => offline.once('ready', resolve))
    await new Promise((resolve) => setTimeout(resolve, 100)) // five flush intervals
    t.equal(await client.hget(dayKey('closing'), 'requests'), null, 'no timer wrote them later')
    await t.resolves(store.close(), 'nothing left: a second close has nothing to report')
  })
})
