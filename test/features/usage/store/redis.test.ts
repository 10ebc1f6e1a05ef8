import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import { utcDay } from '../../../../src/features/usage/windows.ts'
import { buildTestApp, makeTenant, validBody, type TestTenant } from '../../../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../../helpers/simulator.ts'
import { redisForTests } from '../../../helpers/redis.ts'

const redis = await redisForTests()
const skip = 'skip' in redis ? redis.skip : false

/** USAGE_FLUSH_MS of the instances: what one instance's report may lag behind the other's requests */
const flushMs = 25

/** Two gateway instances on the real Redis; the tenants' usage keys are deleted at the end. */
async function twoInstances (t: Test, tenants: TestTenant[]) {
  if ('skip' in redis) throw new Error('unreachable')
  let clock = Date.now()
  const now = () => clock
  const upstream = await startTestSimulator(t, { taskDurationMs: 100_000, now })
  const options = { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants, now, config: { redisUrl: redis.url, usageFlushMs: flushMs } }
  const first = await buildTestApp(t, options)
  const second = await buildTestApp(t, options)
  t.teardown(async () => {
    const store = first.redis
    if (store === null) return
    const keys = (await Promise.all(tenants.map((tenant) => store.keys(`vg:usage:{${tenant.id}}:*`)))).flat()
    if (keys.length > 0) await store.del(...keys)
  })
  const create = (app: FastifyInstance, tenant: TestTenant) =>
    app.inject({ method: 'POST', url: '/v1/videos/generations', headers: { authorization: tenant.authorization }, payload: validBody })
  return { upstream, first, second, create, advance (ms: number) { clock += ms } }
}

t.test('50 concurrent creates against a budget of 10, across two instances: exactly 10 admitted', { skip }, async (t) => {
  // Each create is 4 video-seconds: 40 is exactly ten of them.
  const acme = makeTenant('acme', { budget: { videoSecondsPerDay: 40 }, rateLimit: { max: 1000, timeWindow: 60_000 } })
  const { upstream, first, second, create } = await twoInstances(t, [acme])
  const answers = await Promise.all(Array.from({ length: 50 }, (_, index) => create(index % 2 === 0 ? first : second, acme)))
  const admitted = answers.filter((answer) => answer.statusCode === 200)
  const refused = answers.filter((answer) => answer.statusCode === 429)
  t.equal(admitted.length, 10, 'exactly the budget')
  t.equal(refused.length, 40)
  t.same(new Set(refused.map((answer) => answer.json().error.code)), new Set(['budget_exceeded']))
  t.equal(upstream.simulator.calls.create, 10, 'refused creates never reached the upstream')

  // Request counts reach Redis within USAGE_FLUSH_MS (a report writes its own instance's first):
  // once the other instance's are there too, either instance reports all of them. Waited for by
  // watching Redis, not by sleeping a fixed time, which a loaded machine can outlast.
  const dayKey = `vg:usage:{${acme.id}}:day:${utcDay(Date.now())}` // the usage clock is the real one here
  const written = async () => Number(await first.redis?.hget(dayKey, 'requests') ?? 0)
  for (const deadline = Date.now() + 10_000; await written() < 50 && Date.now() < deadline;) await sleep(flushMs)
  const usage = await second.inject({ method: 'GET', url: '/v1/usage', headers: { authorization: acme.authorization } })
  t.same(usage.json().total, { requests: 51, tasks_created: 10, tasks_completed: 0, tasks_failed: 0, video_seconds: 40, credits: 96, archived_videos: 0, archived_bytes: 0 }, 'either instance reports the shared counters')
  t.match(await first.metrics.registry.metrics(), /^vg_redis_up 1$/m, 'the Redis gauge')
  // One settlement (with its task-index entry) per admitted create, sent behind its answer; refused ones write nothing after.
  const writesBehind = async (app: typeof first) => Number(/^vg_redis_writes_behind_total (\d+)$/m.exec(await app.metrics.registry.metrics())?.[1])
  t.equal(await writesBehind(first) + await writesBehind(second), 10, 'vg_redis_writes_behind_total: one per admitted create, over both instances')
})

t.test('50 concurrent creates against maxConcurrentTasks 10, across two instances: exactly 10 admitted', { skip }, async (t) => {
  const acme = makeTenant('acme', { maxConcurrentTasks: 10, rateLimit: { max: 1000, timeWindow: 60_000 } })
  const { upstream, first, second, create, advance } = await twoInstances(t, [acme])
  const answers = await Promise.all(Array.from({ length: 50 }, (_, index) => create(index % 2 === 0 ? first : second, acme)))
  const admitted = answers.filter((answer) => answer.statusCode === 200)
  t.equal(admitted.length, 10)
  t.same(new Set(answers.filter((answer) => answer.statusCode !== 200).map((answer) => answer.json().error.code)), new Set(['concurrency_limit_exceeded']))
  t.equal(upstream.simulator.calls.create, 10)

  // A task seen finished on one instance frees its slot for the other.
  advance(100_000)
  const id = admitted[0]?.json().id as string
  const read = await second.inject({ method: 'GET', url: `/v1/tasks/${id}`, headers: { authorization: acme.authorization } })
  t.equal(read.json().status, 'completed')
  t.equal((await create(first, acme)).statusCode, 200, 'the slot is free on the other instance')
  t.equal((await create(second, acme)).statusCode, 429)
  // Read again, on both: counted once.
  await first.inject({ method: 'GET', url: `/v1/tasks/${id}`, headers: { authorization: acme.authorization } })
  await second.inject({ method: 'GET', url: `/v1/tasks/${id}/events`, headers: { authorization: acme.authorization } })
  const usage = await first.inject({ method: 'GET', url: '/v1/usage', headers: { authorization: acme.authorization } })
  t.match(usage.json().total, { tasks_created: 11, tasks_completed: 1 })
})

t.test('request counts still in memory are written when the app closes, before its Redis connection quits', { skip }, async (t) => {
  if ('skip' in redis) return
  const acme = makeTenant(`close-${Date.now()}`)
  const upstream = await startTestSimulator(t)
  const app = await buildTestApp(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [acme], config: { redisUrl: redis.url, usageFlushMs: 60_000 } })
  for (let i = 0; i < 4; i++) {
    const answer = await app.inject({ method: 'GET', url: '/v1/tasks/task-unified-1-none.AAAAAAAAAAAAAAAAAAAAAA', headers: { authorization: acme.authorization } })
    t.equal(answer.statusCode, 404)
  }
  const reader = new Redis(redis.url)
  const key = `vg:usage:{${acme.id}}:day:${utcDay(Date.now())}`
  t.teardown(async () => {
    await reader.del(key)
    await reader.quit()
  })
  t.equal(await reader.hget(key, 'requests'), null, 'gathered in memory (USAGE_FLUSH_MS is a minute)')
  await app.close()
  t.equal(await reader.hget(key, 'requests'), '4')
})
