import t from 'tap'
import FakeTimers from '@sinonjs/fake-timers'
import { buildTestApp, makeTenant, validBody } from '../../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'
import { assertErrorResponse } from '../../helpers/assert-error.ts'

t.test('per-tenant limits (memory store)', async (t) => {
  const clock = FakeTimers.install({ toFake: ['Date'] })
  t.teardown(() => clock.uninstall())
  const upstream = await startTestSimulator(t)
  const small = makeTenant('small', { rateLimit: { max: 2, timeWindow: '30 seconds' }, readRateLimit: { max: 3, timeWindow: 10_000 } })
  const other = makeTenant('other')
  const app = await buildTestApp(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [small, other] })
  const create = (tenant = small) => app.inject({ method: 'POST', url: '/v1/videos/generations', headers: { authorization: tenant.authorization }, payload: validBody })

  const first = await create()
  t.equal(first.statusCode, 200)
  t.equal(first.headers['x-ratelimit-limit'], '2')
  t.equal(first.headers['x-ratelimit-remaining'], '1')
  t.equal(first.headers['ratelimit-policy'], '"tenant";q=2;w=30')
  t.equal(first.headers.ratelimit, '"tenant";r=1;t=30')
  t.equal((await create()).statusCode, 200)

  const upstreamCreates = upstream.simulator.calls.create
  const limited = await create()
  assertErrorResponse(t, limited, { status: 429, code: 'rate_limit_exceeded', type: 'rate_limit_error', message: 'Rate limit exceeded, retry in 30 seconds.' })
  t.equal(limited.headers['retry-after'], '30')
  t.equal(limited.headers['x-ratelimit-remaining'], '0')
  t.equal(limited.headers.ratelimit, '"tenant";r=0;t=30')
  t.equal(upstream.simulator.calls.create, upstreamCreates, 'a limited request costs no upstream call')

  t.equal((await create(other)).statusCode, 200, 'another tenant is not affected')

  t.test('reads are counted apart from creates, with their own limit', async (t) => {
    const taskId = first.json().id
    const read = () => app.inject({ method: 'GET', url: `/v1/tasks/${taskId}`, headers: { authorization: small.authorization } })
    const firstRead = await read()
    t.equal(firstRead.statusCode, 200, 'creates being exhausted does not block reads')
    t.equal(firstRead.headers['ratelimit-policy'], '"tenant";q=3;w=10')
    await read()
    await read()
    t.equal((await read()).statusCode, 429)
    clock.tick(10_001)
    t.equal((await read()).statusCode, 200, 'a new read window')
  })

  t.test('the window ends', async (t) => {
    clock.tick(30_001)
    const again = await create()
    t.equal(again.statusCode, 200)
    t.equal(again.headers['x-ratelimit-remaining'], '1')
  })

  t.test('defaults: 60 creates and 600 reads a minute', async (t) => {
    const response = await create(other)
    t.equal(response.headers['ratelimit-policy'], '"tenant";q=60;w=60')
  })
})
