import t, { type Test } from 'tap'
import { Redis } from 'ioredis'
import { createMemoryTaskIndexStore, type TaskIndexEntry, type TaskIndexLimits, type TaskIndexStore } from '../../../../src/features/tasks/index-store/memory.ts'
import { createRedisTaskIndexStore } from '../../../../src/features/tasks/index-store/redis.ts'
import { redisForTests } from '../../../helpers/redis.ts'

const attributes = { model: 'sora-2', prompt: 'p', seconds: '4', aspectRatio: '9:16', quality: '720p' }

function entry (id: string, createdAt: number, sequence = 0): TaskIndexEntry {
  return { id, createdAt, rank: createdAt * 1000 + sequence, attributes: { ...attributes, prompt: `prompt of ${id}` } }
}

const ids = (page: { entries: TaskIndexEntry[] } | null): string[] | null => page === null ? null : page.entries.map((found) => found.id)

/** The same contract, whichever store; `limits` has maxEntriesPerTenant 5, retention 1 000 000 ms, now at 10 000 000. */
async function contract (t: Test, makeStore: (limits: TaskIndexLimits) => TaskIndexStore, clock: { now: number }): Promise<void> {
  const store = makeStore({ maxEntriesPerTenant: 5, retentionMs: 1_000_000, now: () => clock.now })
  // Out of order and with a tie in the same ms: rank orders them, the sequence breaks the tie.
  await store.add('acme', entry('c', 9_000_300))
  await store.add('acme', entry('a', 9_000_100))
  await store.add('acme', entry('b2', 9_000_200, 2))
  await store.add('acme', entry('b1', 9_000_200, 1))
  await store.add('globex', entry('g', 9_000_150))

  t.same(ids(await store.list('acme', { limit: 10, order: 'desc' })), ['c', 'b2', 'b1', 'a'], 'newest first')
  t.same(ids(await store.list('acme', { limit: 10, order: 'asc' })), ['a', 'b1', 'b2', 'c'])
  t.same(await store.list('acme', { limit: 2, order: 'desc' }), { entries: [entry('c', 9_000_300), entry('b2', 9_000_200, 2)].map((e) => ({ ...e, attributes: { ...attributes, prompt: `prompt of ${e.id}` } })), hasMore: true }, 'whole entries come back')
  t.same(await store.list('acme', { after: 'b2', limit: 2, order: 'desc' }).then((page) => ({ ids: ids(page), hasMore: page?.hasMore })), { ids: ['b1', 'a'], hasMore: false }, 'the cursor is exclusive; the last page says so')
  t.same(await store.list('acme', { after: 'b1', limit: 5, order: 'asc' }).then(ids), ['b2', 'c'])
  t.equal(await store.list('acme', { after: 'nope', limit: 5, order: 'asc' }), null, 'an unknown cursor is null')
  t.equal(await store.list('acme', { after: 'g', limit: 5, order: 'asc' }), null, 'so is another tenant\'s id')
  t.same(await store.list('nobody', { limit: 5, order: 'desc' }), { entries: [], hasMore: false })

  t.same(await store.get('acme', 'a'), entry('a', 9_000_100))
  // The store keeps and hands out its own copies: no caller's object changes what it holds.
  const added = entry('m', 9_500_000)
  await store.add('mutable', added)
  added.attributes.prompt = 'changed after add'
  const read = await store.get('mutable', 'm')
  t.equal(read?.attributes.prompt, 'prompt of m', 'changing the added object changes nothing')
  if (read !== null) read.attributes.prompt = 'changed after get'
  const listed = await store.list('mutable', { limit: 1, order: 'asc' })
  t.equal(listed?.entries[0]?.attributes.prompt, 'prompt of m', 'nor does changing a returned one')
  if (listed?.entries[0] !== undefined) listed.entries[0].attributes.prompt = 'changed after list'
  t.same(await store.get('mutable', 'm'), entry('m', 9_500_000))
  t.equal(await store.get('globex', 'a'), null, 'per tenant')

  t.equal(await store.remove('acme', 'b1'), true)
  t.equal(await store.remove('acme', 'b1'), false, 'removing twice is harmless')
  t.equal(await store.remove('globex', 'a'), false, 'another tenant cannot remove it')
  t.same(ids(await store.list('acme', { limit: 10, order: 'asc' })), ['a', 'b2', 'c'])
  t.equal(await store.get('acme', 'b1'), null)

  // Re-adding an id moves it (one entry per id).
  await store.add('acme', entry('a', 9_000_400))
  t.same(ids(await store.list('acme', { limit: 10, order: 'asc' })), ['b2', 'c', 'a'])

  // Bounded: the oldest go when a tenant passes maxEntriesPerTenant...
  for (let index = 0; index < 4; index++) await store.add('acme', entry(`n${index}`, 9_001_000 + index))
  t.same(ids(await store.list('acme', { limit: 10, order: 'asc' })), ['a', 'n0', 'n1', 'n2', 'n3'])
  t.equal(await store.get('acme', 'b2'), null, 'a dropped entry is gone from lookups too')
  // ...and entries older than the retention go on the next add.
  clock.now = 9_001_002 + 1_000_000
  await store.add('acme', entry('late', clock.now))
  t.same(ids(await store.list('acme', { limit: 10, order: 'asc' })), ['n2', 'n3', 'late'])
  t.same(ids(await store.list('globex', { limit: 10, order: 'asc' })), ['g'], 'other tenants untouched until they add')
}

t.test('memory store', async (t) => {
  const clock = { now: 10_000_000 }
  await contract(t, createMemoryTaskIndexStore, clock)
})

const redis = await redisForTests()
t.test('Redis store', { skip: 'skip' in redis ? redis.skip : false }, async (t) => {
  if ('skip' in redis) return
  const client = new Redis(redis.url)
  t.teardown(() => client.quit())
  const keyPrefix = `test-${process.pid}-${Date.now()}:tasks:`
  const clock = { now: 10_000_000 }
  await contract(t, (limits) => createRedisTaskIndexStore({ ...limits, redis: client, keyPrefix }), clock)
  t.same((await client.keys(`${keyPrefix}*`)).sort(), [`${keyPrefix}{acme}:entries`, `${keyPrefix}{acme}:order`, `${keyPrefix}{globex}:entries`, `${keyPrefix}{globex}:order`, `${keyPrefix}{mutable}:entries`, `${keyPrefix}{mutable}:order`], 'one sorted set and one hash per tenant, under its hash tag')
  await client.del(...await client.keys(`${keyPrefix}*`))

  t.test('a Redis that fails makes the store throw', async (t) => {
    const broken = new Redis('redis://127.0.0.1:1', { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null })
    broken.on('error', () => {})
    const failing = createRedisTaskIndexStore({ redis: broken, keyPrefix: 'x:', maxEntriesPerTenant: 5, retentionMs: 1000, now: Date.now })
    await t.rejects(failing.list('acme', { limit: 1, order: 'asc' }))
    broken.disconnect()
  })
})
