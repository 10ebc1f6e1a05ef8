import t, { type Test } from 'tap'
import { Redis } from 'ioredis'
import { randomUUID } from 'node:crypto'
import { memoryTokenCreateCounter, redisTokenCreateCounter, type TokenCreateCounter } from '../../../src/features/browser-tokens/create-counter.ts'
import { redisForTests } from '../../helpers/redis.ts'

/** One contract, both stores. */
async function contract (t: Test, counter: TokenCreateCounter, expire: () => Promise<void>): Promise<void> {
  const token = randomUUID()
  const farFuture = Date.now() + 60_000
  t.equal(await counter.add(token, farFuture), 1)
  t.equal(await counter.add(token, farFuture), 2)
  await counter.remove(token)
  t.equal(await counter.add(token, farFuture), 2, 'a taken-back create is not counted')
  t.equal(await counter.add(randomUUID(), farFuture), 1, 'tokens count apart')
  await counter.remove(randomUUID())
  await expire()
  t.equal(await counter.add(token, Date.now() + 60_000), 1, 'an expired count starts again')
}

t.test('memory', async (t) => {
  let now = Date.now()
  const counter = memoryTokenCreateCounter({ maxTokens: 100, now: () => now })
  await contract(t, counter, async () => { now += 120_000 })
})

t.test('redis', async (t) => {
  const available = await redisForTests()
  if ('skip' in available) { t.comment(available.skip); return }
  const redis = new Redis(available.url)
  t.teardown(() => redis.quit())
  const keyPrefix = `vg:test:token-creates:${randomUUID()}:`
  const counter = redisTokenCreateCounter({ redis, keyPrefix })
  await contract(t, counter, async () => {
    for (const key of await redis.keys(`${keyPrefix}*`)) await redis.pexpire(key, 1)
    await new Promise((resolve) => setTimeout(resolve, 20))
  })
  const token = randomUUID()
  await counter.add(token, Date.now() + 5_000)
  const ttl = await redis.pttl(keyPrefix + token)
  t.ok(ttl > 0 && ttl <= 5_000, 'the count lives as long as its token')
})
