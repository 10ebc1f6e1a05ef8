import { randomUUID } from 'node:crypto'
import t from 'tap'
import { Redis } from 'ioredis'
import { createWriteBehind, type DeferredWrite } from '../../../src/features/store/write-behind.ts'
import { redisForTests } from '../../helpers/redis.ts'

const redis = await redisForTests()

t.test('the write-behind', { skip: 'skip' in redis ? redis.skip : false }, async (t) => {
  if ('skip' in redis) return
  const client = new Redis(redis.url)
  await client.ping()
  const prefix = `vg:test-write-behind:${randomUUID()}:`
  t.teardown(async () => {
    const keys = await client.keys(`${prefix}*`)
    if (keys.length > 0) await client.del(...keys)
    await client.quit()
  })
  const failures: Array<{ key: string, final: boolean, message: string }> = []
  const incr = (key: string): DeferredWrite => ({
    add: (pipeline) => { pipeline.incr(`${prefix}${key}`) },
    onFailure: (error, final) => { failures.push({ key, final, message: (error as Error).message }) }
  })

  t.test('the writes of one turn leave in one pipeline, sent before send() resolves, ahead of later commands', async (t) => {
    const writeBehind = createWriteBehind({ redis: client })
    let pipelines = 0
    const pipeline = client.pipeline.bind(client)
    client.pipeline = ((...args: Parameters<typeof client.pipeline>) => { pipelines++; return pipeline(...args) }) as typeof client.pipeline
    t.teardown(() => { client.pipeline = pipeline })
    const sent = [writeBehind.send(incr('a')), writeBehind.send(incr('a')), writeBehind.send(incr('b'))]
    t.equal(writeBehind.pending, 3, 'queued')
    t.equal(pipelines, 0, 'nothing sent within the turn')
    await Promise.all(sent)
    t.equal(pipelines, 1, 'one pipeline for the three')
    // Sent, not awaited: a command issued now is behind them on the connection.
    t.equal(await client.get(`${prefix}a`), '2')
    t.equal(await client.get(`${prefix}b`), '1')
    await writeBehind.flush()
    t.equal(writeBehind.pending, 0)
  })

  t.test('a write that fails is kept and sent again; flush() retries at once', async (t) => {
    const writeBehind = createWriteBehind({ redis: client, retryMs: 60_000 })
    failures.length = 0
    await client.set(`${prefix}text`, 'not a number')
    await writeBehind.send(incr('text'))
    await writeBehind.send(incr('fine'))
    // The answers come back after send(): a flush waits for them.
    await writeBehind.flush().catch(() => {})
    // (Its answer may be back before flush() starts, which then sends it again, failing again: once or twice.)
    t.ok(failures.length >= 1 && failures.length <= 2, 'told')
    t.ok(failures.every((failure) => failure.key === 'text' && !failure.final && /not an integer/.test(failure.message)), 'not given up')
    t.equal(writeBehind.pending, 1, 'kept for the retry')
    const told = failures.length
    await client.set(`${prefix}text`, '41')
    await writeBehind.flush()
    t.equal(await client.get(`${prefix}text`), '42', 'written by the retry')
    t.equal(writeBehind.pending, 0)
    t.equal(failures.length, told, 'the retry succeeded')
  })

  t.test('the retry timer sends it again by itself', async (t) => {
    const writeBehind = createWriteBehind({ redis: client, retryMs: 20 })
    failures.length = 0
    await client.set(`${prefix}later`, 'x')
    await writeBehind.send(incr('later'))
    await writeBehind.flush()
    t.equal(failures.length, 1)
    await client.set(`${prefix}later`, '1')
    for (let i = 0; i < 100 && writeBehind.pending > 0; i++) await new Promise((resolve) => setTimeout(resolve, 10))
    t.equal(await client.get(`${prefix}later`), '2')
  })

  t.test('bounded: a write beyond maxPending is given up at once', async (t) => {
    const writeBehind = createWriteBehind({ redis: client, maxPending: 2 })
    failures.length = 0
    const sent = [writeBehind.send(incr('bound')), writeBehind.send(incr('bound')), writeBehind.send(incr('bound'))]
    t.same(failures, [{ key: 'bound', final: true, message: '2 writes already wait for Redis' }])
    await Promise.all(sent)
    await writeBehind.flush()
    t.equal(await client.get(`${prefix}bound`), '2')
  })

  t.test('Redis away: the writes wait (send() does not); close gives up what it cannot write', async (t) => {
    const offline = new Redis(redis.url, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0 })
    offline.on('error', () => {})
    t.teardown(() => offline.disconnect())
    const writeBehind = createWriteBehind({ redis: offline, retryMs: 60_000 })
    failures.length = 0
    await writeBehind.send(incr('away'))
    t.same(failures, [{ key: 'away', final: false, message: 'redis is wait' }])
    t.equal(writeBehind.pending, 1)
    t.equal(await writeBehind.close(), 1, 'one write lost, and counted')
    t.same(failures.at(-1), { key: 'away', final: true, message: 'not written before close' })
    t.equal(writeBehind.pending, 0)
    t.equal(await client.get(`${prefix}away`), null)
  })

  t.test('close sends what is queued and waits for its answer', async (t) => {
    const writeBehind = createWriteBehind({ redis: client })
    const sent = writeBehind.send(incr('closing'))
    t.equal(await writeBehind.close(), 0)
    await sent
    t.equal(await client.get(`${prefix}closing`), '1')
  })
})
