import t from 'tap'
import { buildTestApp, makeTenant, validBody } from '../../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'
import { redisForTests } from '../../helpers/redis.ts'

const redis = await redisForTests()
const skip = 'skip' in redis ? redis.skip : false

t.test('two gateway instances on one Redis enforce one limit together', { skip }, async (t) => {
  if ('skip' in redis) return
  const upstream = await startTestSimulator(t)
  const acme = makeTenant('acme', { rateLimit: { max: 5, timeWindow: 60_000 } })
  const options = { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [acme], config: { redisUrl: redis.url } }
  const first = await buildTestApp(t, options)
  const second = await buildTestApp(t, options)
  t.equal(first.redis?.status, 'ready')

  const create = (app: typeof first) => app.inject({ method: 'POST', url: '/v1/videos/generations', headers: { authorization: acme.authorization }, payload: validBody })
  const statuses: number[] = []
  // Alternate between the instances: 8 requests against a limit of 5.
  for (let i = 0; i < 8; i++) statuses.push((await create(i % 2 === 0 ? first : second)).statusCode)
  t.same(statuses, [200, 200, 200, 200, 200, 429, 429, 429], 'N instances do not mean N times the limit')
  t.equal(upstream.simulator.calls.create, 5)

  const keys = await first.redis?.keys(`vg:rl:*${acme.id}*`)
  t.ok((keys?.length ?? 0) >= 1, 'the counter lives in Redis under the vg:rl: namespace')

  t.test('/readyz checks the store', async (t) => {
    const ready = await first.inject({ method: 'GET', url: '/readyz' })
    t.same(ready.json(), { status: 'ok', checks: { config: 'ok', store: 'ok', upstream: 'closed' } })
  })
})

t.test('an unreachable REDIS_URL stops start-up with a message naming it', async (t) => {
  const upstream = await startTestSimulator(t)
  await t.rejects(
    buildTestApp(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [makeTenant('acme')], config: { redisUrl: 'redis://127.0.0.1:1' } }),
    /REDIS_URL: cannot connect to Redis/
  )
})
