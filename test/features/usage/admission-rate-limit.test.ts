import t from 'tap'
import { randomUUID } from 'node:crypto'
import FakeTimers from '@sinonjs/fake-timers'
import { Redis } from 'ioredis'
import { buildTestApp, logCollector, makeTenant, validBody } from '../../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'
import { assertErrorResponse } from '../../helpers/assert-error.ts'
import { redisForTests } from '../../helpers/redis.ts'

const redis = await redisForTests()

/**
 * With Redis, a create's tenant limit is counted by the admission script, in the round trip that
 * takes its concurrency slot and budget (usage/store/redis.ts); the answer is the one
 * @fastify/rate-limit gives on every other route (test/features/tenants/rate-limit.test.ts).
 */
t.test('Redis: the create limit is counted on admission, with the same headers and 429', { skip: 'skip' in redis ? redis.skip : false }, async (t) => {
  if ('skip' in redis) return
  const clock = FakeTimers.install({ toFake: ['Date'] })
  t.teardown(() => clock.uninstall())
  const upstream = await startTestSimulator(t, { taskDurationMs: 60_000 })
  const small = makeTenant('small', {
    rateLimit: { max: 2, timeWindow: '30 seconds' },
    maxConcurrentTasks: 5,
    budget: { videoSecondsPerDay: 1000 },
    allowedModels: [validBody.model]
  })
  const redisKeyPrefix = `test-admission-rl-${randomUUID()}:`
  const client = new Redis(redis.url)
  t.teardown(async () => {
    const keys = await client.keys(`${redisKeyPrefix}*`)
    if (keys.length > 0) await client.del(...keys)
    await client.quit()
  })
  const app = await buildTestApp(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [small], config: { redisUrl: redis.url, redisKeyPrefix } })
  const headers = { authorization: small.authorization }
  const create = (body: Record<string, unknown> = validBody) => app.inject({ method: 'POST', url: '/v1/videos/generations', headers, payload: body })

  const forbidden = await create({ ...validBody, model: 'veo-3.1-generate-preview' })
  t.equal(forbidden.statusCode, 403, 'refused on its own merits before admission')
  t.equal(forbidden.headers['x-ratelimit-remaining'], undefined, 'not counted: it never reached admission')

  const first = await create()
  t.equal(first.statusCode, 200)
  t.equal(first.headers['x-ratelimit-limit'], '2')
  t.equal(first.headers['x-ratelimit-remaining'], '1')
  t.equal(first.headers['x-ratelimit-reset'], '30')
  t.equal(first.headers['ratelimit-policy'], '"tenant";q=2;w=30')
  t.equal(first.headers.ratelimit, '"tenant";r=1;t=30')
  t.equal((await create()).headers['x-ratelimit-remaining'], '0')

  const creates = upstream.simulator.calls.create
  const limited = await create()
  assertErrorResponse(t, limited, { status: 429, code: 'rate_limit_exceeded', type: 'rate_limit_error', message: 'Rate limit exceeded, retry in 30 seconds.' })
  t.equal(limited.headers['retry-after'], '30')
  t.equal(limited.headers['x-ratelimit-limit'], '2')
  t.equal(limited.headers['x-ratelimit-remaining'], '0')
  t.equal(limited.headers['x-ratelimit-reset'], '30')
  t.equal(limited.headers.ratelimit, '"tenant";r=0;t=30')
  t.equal(upstream.simulator.calls.create, creates, 'no upstream call')

  t.test('the refused create took nothing: no slot, no budget, one counter in the tenant\'s slot', async (t) => {
    const usage = (await app.inject({ method: 'GET', url: '/v1/usage', headers })).json<{ data: Array<{ video_seconds: number, tasks_created: number }> }>()
    t.match(usage.data.at(-1), { tasks_created: 2, video_seconds: 8 })
    t.equal(await client.zcard(`${redisKeyPrefix}usage:{${small.id}}:inflight`), 2, 'the two created tasks\' slots only')
    t.same(await client.keys(`${redisKeyPrefix}rl:*POST/v1/videos/generations*`), [`${redisKeyPrefix}rl:{${small.id}}:POST/v1/videos/generations`], '@fastify/rate-limit kept no counter of its own for this route')
  })

  t.test('the OpenAI create is counted apart, as each route is', async (t) => {
    const video = await app.inject({ method: 'POST', url: '/v1/videos', headers, payload: { prompt: 'counted apart' } })
    t.equal(video.statusCode, 200)
    t.equal(video.headers['x-ratelimit-remaining'], '1')
  })

  t.test('this instance lists its own creates at once, on both dialects', async (t) => {
    const listed = (await app.inject({ method: 'GET', url: '/v1/videos', headers })).json<{ data: Array<{ id: string }> }>()
    t.equal(listed.data.length, 3)
    t.equal(listed.data.at(-1)?.id, first.json<{ id: string }>().id)
  })

  t.test('reads keep @fastify/rate-limit\'s own limit', async (t) => {
    const read = await app.inject({ method: 'GET', url: `/v1/tasks/${first.json<{ id: string }>().id}`, headers })
    t.equal(read.statusCode, 200)
    t.equal(read.headers['ratelimit-policy'], '"tenant";q=600;w=60')
  })
})

t.test('Redis: a settlement that fails is retried behind the answer, and given up with an error at close', { skip: 'skip' in redis ? redis.skip : false }, async (t) => {
  if ('skip' in redis) return
  const upstream = await startTestSimulator(t, { taskDurationMs: 60_000 })
  const acme = makeTenant('acme', { maxConcurrentTasks: 3 })
  const redisKeyPrefix = `test-settle-fails-${randomUUID()}:`
  const client = new Redis(redis.url)
  t.teardown(async () => {
    const keys = await client.keys(`${redisKeyPrefix}*`)
    if (keys.length > 0) await client.del(...keys)
    await client.quit()
  })
  // The tenant's index entries under a key of the wrong type: the settlement's script fails on it, every time.
  await client.set(`${redisKeyPrefix}tasks:{${acme.id}}:entries`, 'not a hash')
  const logs = logCollector()
  const app = await buildTestApp(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [acme], config: { redisUrl: redis.url, redisKeyPrefix }, logger: { level: 'info', stream: logs.stream } })
  const created = await app.inject({ method: 'POST', url: '/v1/videos/generations', headers: { authorization: acme.authorization }, payload: validBody })
  t.equal(created.statusCode, 200, 'the task exists upstream: the client has it')
  await app.redisWriteBehind?.flush()
  t.equal(app.redisWriteBehind?.pending, 1, 'kept for a retry')
  const failures = () => logs.lines.filter((line) => typeof line.msg === 'string' && line.msg.startsWith('usage store failed to settle a create')).map((line) => ({ level: line.level, msg: line.msg }))
  t.same(failures(), [{ level: 40, msg: 'usage store failed to settle a create: retried' }])
  await app.close()
  t.same(failures().at(-1), { level: 50, msg: 'usage store failed to settle a create: its estimate stays charged, its slot is freed after TASK_CONCURRENCY_STALE_MS, and it is missing from the task index' }, 'given up at close, loudly')
  t.equal(await client.zcard(`${redisKeyPrefix}usage:{${acme.id}}:inflight`), 1, 'the settlement part ran (a script is not rolled back): the task holds its slot, counted once')
})
