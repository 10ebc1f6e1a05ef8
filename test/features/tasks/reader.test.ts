import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { Redis } from 'ioredis'
import { createMemoryTaskCache, createRedisTaskCache, type TaskCache } from '../../../src/features/tasks/cache.ts'
import { createTaskReader } from '../../../src/features/tasks/reader.ts'
import { takeSnapshot, type TaskSnapshot } from '../../../src/features/tasks/snapshot.ts'
import { gatewayError } from '../../../src/errors/table.ts'
import { redisForTests } from '../../helpers/redis.ts'

const redis = await redisForTests()
const skip = 'skip' in redis ? redis.skip : false

/** A fake upstream: counts fetches, answers after `delayMs` with the status it is told. */
function fakeUpstream (options: { delayMs?: number, now: () => number }) {
  const state = { fetches: 0, status: 'processing', progress: 10, fail: undefined as Error | undefined }
  return {
    state,
    async fetch (upstreamId: string): Promise<TaskSnapshot> {
      state.fetches++
      await sleep(options.delayMs ?? 0)
      if (state.fail !== undefined) throw state.fail
      return takeSnapshot({ id: upstreamId, status: state.status as 'processing', progress: state.progress }, options.now())
    }
  }
}

t.test('in one process: single-flight, TTL, terminal TTL, failures not kept', async (t) => {
  let clock = 1_000_000
  const now = () => clock
  const upstream = fakeUpstream({ delayMs: 20, now })
  const reader = createTaskReader({ cache: createMemoryTaskCache({ maxEntries: 100, now }), fetch: upstream.fetch, statusTtlMs: 1000, terminalTtlMs: 60_000, claimWaitMs: 5000 })

  const reads = await Promise.all(Array.from({ length: 50 }, async () => await reader.read('task-unified-1')))
  t.equal(upstream.state.fetches, 1, '50 concurrent reads, one upstream call')
  t.same(reads.map((read) => read.source).sort().slice(0, 2), ['miss', 'shared'])
  t.equal(reads.filter((read) => read.source === 'miss').length, 1)
  t.ok(reads.every((read) => read.etag === reads[0]?.etag && read.task.progress === 10))

  t.equal((await reader.read('task-unified-1')).source, 'hit', 'fresh: no call')
  clock += 999
  t.equal((await reader.read('task-unified-1')).source, 'hit', 'still fresh 1 ms before the TTL')
  upstream.state.progress = 20
  clock += 2
  const expired = await reader.read('task-unified-1')
  t.same([expired.source, expired.task.progress, upstream.state.fetches], ['miss', 20, 2], 'past the TTL it asks again')
  t.not(expired.etag, reads[0]?.etag, 'a changed body has a new ETag')

  upstream.state.status = 'completed'
  upstream.state.progress = 100
  clock += 1001
  t.equal((await reader.read('task-unified-1')).terminal, true)
  clock += 59_999
  t.equal((await reader.read('task-unified-1')).source, 'hit', 'a finished task is kept for the terminal TTL')
  clock += 2
  t.equal((await reader.read('task-unified-1')).source, 'miss', 'and asked again after it')
  t.equal(upstream.state.fetches, 4)

  upstream.state.fail = gatewayError('upstream_unavailable')
  const failures = await Promise.allSettled(Array.from({ length: 10 }, async () => await reader.read('task-unified-2')))
  t.ok(failures.every((failure) => failure.status === 'rejected' && failure.reason === upstream.state.fail), 'every waiting reader gets the failure')
  t.equal(upstream.state.fetches, 5, 'from one call')
  upstream.state.fail = undefined
  t.equal((await reader.read('task-unified-2')).source, 'miss', 'a failure is not kept: the next read asks again')
})

t.test('the memory cache forgets the least recently used beyond maxEntries', async (t) => {
  const cache = createMemoryTaskCache({ maxEntries: 2 })
  const snapshot = takeSnapshot({ id: 'x', status: 'pending', progress: 0 }, Date.now())
  await cache.set('a', snapshot, 60_000)
  await cache.set('b', snapshot, 60_000)
  await cache.get('a')
  await cache.set('c', snapshot, 60_000)
  t.same([await cache.get('a') !== undefined, await cache.get('b') !== undefined, await cache.get('c') !== undefined], [true, false, true])
})

t.test('across instances with Redis: one upstream call, and a failed claim is taken over', { skip }, async (t) => {
  if ('skip' in redis) return
  const clients = [new Redis(redis.url), new Redis(redis.url)]
  t.teardown(() => { for (const client of clients) client.disconnect() })
  const keyPrefix = `vg:test:${randomUUID()}:`
  const caches: TaskCache[] = clients.map((client) => createRedisTaskCache({ redis: client, keyPrefix }))
  const upstreams = caches.map(() => fakeUpstream({ delayMs: 60, now: Date.now }))
  const readers = caches.map((cache, index) => createTaskReader({ cache, fetch: (upstreams[index] as ReturnType<typeof fakeUpstream>).fetch, statusTtlMs: 2000, terminalTtlMs: 60_000, claimWaitMs: 3000, claimPollMs: 5 }))

  const reads = await Promise.all(readers.flatMap((reader) => Array.from({ length: 25 }, async () => await reader.read('task-unified-shared'))))
  t.equal(upstreams[0]!.state.fetches + upstreams[1]!.state.fetches, 1, '50 concurrent reads on two instances, one upstream call')
  t.ok(reads.every((read) => read.etag === reads[0]?.etag), 'everyone got the same snapshot')
  t.ok(await clients[0]!.pttl(`${keyPrefix}task-unified-shared`) > 0, 'stored with a TTL')

  // Instance 0 holds the claim and fails; instance 1, waiting, takes over.
  upstreams[0]!.state.fail = gatewayError('upstream_timeout')
  const before = upstreams.map((upstream) => upstream.state.fetches)
  const [first, second] = await Promise.allSettled([readers[0]!.read('task-unified-flaky'), sleep(10).then(async () => await readers[1]!.read('task-unified-flaky'))])
  t.equal(first.status, 'rejected')
  t.equal(second.status === 'fulfilled' && second.value.task.id, 'task-unified-flaky', 'the waiting instance fetched it itself')
  t.same(upstreams.map((upstream, index) => upstream.state.fetches - (before[index] as number)), [1, 1], 'one failed call, one that worked')
})

t.test('a claim won just after another instance stored the snapshot fetches nothing', async (t) => {
  // The race, made deterministic: this instance misses, the other instance stores its snapshot
  // and releases its claim, then this instance's claim succeeds.
  const snapshot = takeSnapshot({ id: 'task-unified-raced', status: 'processing', progress: 30 }, 0)
  let stored: TaskSnapshot | undefined
  const cache: TaskCache = {
    async get () {
      const found = stored
      stored = snapshot // the other instance's set lands right after this miss
      return found
    },
    async set () {},
    async claim () { return { release: async () => {} } }
  }
  const upstream = fakeUpstream({ now: Date.now })
  const reader = createTaskReader({ cache, fetch: upstream.fetch, statusTtlMs: 1000, terminalTtlMs: 60_000, claimWaitMs: 1000 })
  const read = await reader.read('task-unified-raced')
  t.equal(upstream.state.fetches, 0, 'the snapshot stored meanwhile is used')
  t.equal(read.task.progress, 30)
})

t.test('a Redis that fails: reads still work, each instance on its own', async (t) => {
  const broken = new Redis({ port: 1, lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null })
  broken.on('error', () => {})
  t.teardown(() => broken.disconnect())
  const upstream = fakeUpstream({ now: Date.now })
  const reader = createTaskReader({ cache: createRedisTaskCache({ redis: broken, keyPrefix: 'vg:task:' }), fetch: upstream.fetch, statusTtlMs: 1000, terminalTtlMs: 60_000, claimWaitMs: 1000 })
  const read = await reader.read('task-unified-3')
  t.same([read.source, read.task.id, upstream.state.fetches], ['miss', 'task-unified-3', 1])
})
