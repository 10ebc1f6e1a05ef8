import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance } from 'fastify'
import { buildTestApp, logCollector, makeTenant, validBody, type TestTenant } from '../../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'
import { assertErrorResponse } from '../../helpers/assert-error.ts'
import { ownRedisServer } from '../../helpers/redis-server.ts'
import { loopbackAllowList, testWebhookSecret } from '../../helpers/webhooks.ts'

/** Polls until `check` holds (bounded). */
async function until (check: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs
  while (!check() && performance.now() < deadline) await sleep(25)
  return check()
}

const own = await ownRedisServer(t)

t.test('Redis goes away mid-traffic and comes back', { skip: 'skip' in own ? own.skip : false }, async (t) => {
  if ('skip' in own) return
  const upstream = await startTestSimulator(t)
  const limited = makeTenant('limited', { rateLimit: { max: 2, timeWindow: 60_000 } })
  const acme = makeTenant('acme', { rateLimit: { max: 1000, timeWindow: 60_000 } })
  const budgeted = makeTenant('budgeted', { budget: { creditsPerDay: 1000 } })
  const hooked = makeTenant('hooked', { webhookSecrets: [testWebhookSecret] })
  const tenants = [limited, acme, budgeted, hooked]
  const build = async (policy: 'memory' | 'allow' | 'deny') => {
    const logs = logCollector()
    const app = await buildTestApp(t, {
      upstreamUrl: upstream.url,
      upstreamKey: TEST_UPSTREAM_KEY,
      tenants,
      config: { redisUrl: own.url, rateLimitOnStoreError: policy, publicBaseUrl: 'http://127.0.0.1:9', webhookAllowedDestinations: loopbackAllowList },
      logger: { level: 'info', stream: logs.stream }
    })
    return { app, logs }
  }
  const gateways = { memory: await build('memory'), allow: await build('allow'), deny: await build('deny') }
  const { app, logs } = gateways.memory
  const create = (target: FastifyInstance, tenant: TestTenant, key?: string) => target.inject({
    method: 'POST',
    url: '/v1/videos/generations',
    headers: { authorization: tenant.authorization, ...(key === undefined ? {} : { 'idempotency-key': key }) },
    payload: validBody
  })
  const redisLines = () => logs.lines.filter((line) => line.dependency === 'redis').map((line) => ({ level: line.level, msg: line.msg }))

  t.equal((await create(app, acme, 'before')).statusCode, 200, 'before the outage: keys and limits in Redis')
  t.equal((await create(app, limited)).statusCode, 200, 'one of the limited tenant\'s two, counted in Redis')

  await own.kill()
  t.ok(await until(() => Object.values(gateways).every(({ app }) => app.redis?.status !== 'ready'), 5_000), 'every instance noticed')

  t.test('during the outage', async (t) => {
    t.test('memory policy: limits count in this instance', async (t) => {
      // The Redis count (1) is out of reach: this instance starts its own, and still enforces the limit.
      t.equal((await create(app, limited)).statusCode, 200)
      t.equal((await create(app, limited)).statusCode, 200)
      const limitedAnswer = await create(app, limited)
      assertErrorResponse(t, limitedAnswer, { status: 429, code: 'rate_limit_exceeded', type: 'rate_limit_error', message: /^Rate limit exceeded, retry in/ })
      t.equal((await create(app, acme)).statusCode, 200, 'requests without a key are served')
      t.equal((await app.inject({ method: 'GET', url: '/v1/tasks/x' })).statusCode, 401, 'the per-IP limit of unauthenticated requests counts in memory too')
    })

    t.test('a request with an Idempotency-Key fails closed', async (t) => {
      const before = upstream.simulator.calls.create
      const response = await create(app, acme, 'during')
      assertErrorResponse(t, response, { status: 503, code: 'store_unavailable', type: 'api_error', message: 'The gateway\'s shared store is unavailable; retry shortly.' })
      t.equal(response.headers['retry-after'], '5')
      t.equal(upstream.simulator.calls.create, before, 'no upstream call')
    })

    t.test('a create of a tenant with a budget fails closed; usage reports too', async (t) => {
      const before = upstream.simulator.calls.create
      const response = await create(app, budgeted)
      assertErrorResponse(t, response, { status: 503, code: 'store_unavailable', type: 'api_error', message: 'The gateway\'s shared store is unavailable; retry shortly.' })
      t.equal(response.headers['retry-after'], '5')
      t.equal(upstream.simulator.calls.create, before, 'no upstream call')
      const usage = await app.inject({ method: 'GET', url: '/v1/usage', headers: { authorization: acme.authorization } })
      assertErrorResponse(t, usage, { status: 503, code: 'store_unavailable', type: 'api_error', message: 'The gateway\'s shared store is unavailable; retry shortly.' })
    })

    t.test('a create with callback_url fails closed before the upstream call (its registration cannot be stored)', async (t) => {
      const before = upstream.simulator.calls.create
      const response = await app.inject({
        method: 'POST',
        url: '/v1/videos/generations',
        headers: { authorization: hooked.authorization },
        payload: { ...validBody, callback_url: 'http://127.0.0.1:9/hook' }
      })
      assertErrorResponse(t, response, { status: 503, code: 'store_unavailable', type: 'api_error', message: 'The gateway\'s shared store is unavailable; retry shortly.' })
      t.equal(upstream.simulator.calls.create, before, 'no upstream call: no task the caller would not know of')
    })

    t.test('a browser token with a create cap fails closed; one without is served', async (t) => {
      const mint = async (body: Record<string, unknown>) => (await app.inject({ method: 'POST', url: '/v1/tokens', headers: { authorization: acme.authorization }, payload: body })).json<{ token: string }>().token
      const before = upstream.simulator.calls.create
      const capped = await app.inject({ method: 'POST', url: '/v1/videos/generations', headers: { authorization: `Bearer ${await mint({ max_creates: 1 })}` }, payload: validBody })
      assertErrorResponse(t, capped, { status: 503, code: 'store_unavailable', type: 'api_error', message: 'The gateway\'s shared store is unavailable; retry shortly.' })
      t.equal(capped.headers['retry-after'], '5')
      t.equal(upstream.simulator.calls.create, before, 'no upstream call: the cap cannot be kept')
      const uncapped = await app.inject({ method: 'POST', url: '/v1/videos/generations', headers: { authorization: `Bearer ${await mint({})}` }, payload: validBody })
      t.equal(uncapped.statusCode, 200, 'nothing to count, nothing to refuse')
    })

    t.test('allow policy: limits are not enforced', async (t) => {
      for (let i = 0; i < 4; i++) t.equal((await create(gateways.allow.app, limited)).statusCode, 200)
    })

    t.test('deny policy: 503', async (t) => {
      assertErrorResponse(t, await create(gateways.deny.app, acme), { status: 503, code: 'store_unavailable', type: 'api_error', message: /unavailable/ })
    })

    t.test('/readyz: store degraded, 503', async (t) => {
      const ready = await app.inject({ method: 'GET', url: '/readyz' })
      t.equal(ready.statusCode, 503)
      t.same(ready.json(), { status: 'unavailable', checks: { config: 'ok', store: 'degraded', upstream: 'closed' } })
    })

    t.test('one warning for the whole outage, not one per request or reconnect attempt', async (t) => {
      // Let ioredis try to reconnect a few times first.
      await sleep(600)
      t.same(redisLines(), [{ level: 40, msg: 'redis is unavailable: rate limits count per instance, requests with an Idempotency-Key and creates of tenants with a budget or concurrency cap get 503, until it is back' }])
      t.equal(logs.lines.filter((line) => line.level === 40).length, 1, 'no other warning either')
    })
  })

  t.test('Redis is back', async (t) => {
    await own.start()
    // ioredis reconnects by itself (its backoff is at most 2 s).
    t.ok(await until(() => Object.values(gateways).every(({ app }) => app.redis?.status === 'ready'), 10_000), 'every instance reconnected')
    t.same(redisLines().slice(1), [{ level: 30, msg: 'redis is available again' }], 'one info line')
    t.equal((await create(app, acme, 'after')).statusCode, 200, 'keys work again')
    t.equal((await create(app, acme, 'after')).headers['idempotent-replayed'], 'true')
    t.same((await app.inject({ method: 'GET', url: '/readyz' })).json(), { status: 'ok', checks: { config: 'ok', store: 'ok', upstream: 'closed' } })
    t.equal((await create(gateways.deny.app, acme)).statusCode, 200, 'the deny policy serves again')
    t.equal((await create(app, budgeted)).statusCode, 200, 'budgets are checked again')
  })
})
