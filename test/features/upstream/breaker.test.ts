import t from 'tap'
import FakeTimers from '@sinonjs/fake-timers'
import { buildTestApp, logCollector, makeTenant, validBody } from '../../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'
import { assertErrorResponse } from '../../helpers/assert-error.ts'

t.test('the upstream circuit breaker', async (t) => {
  // Only Date is faked: the breaker's clock. Sockets and the simulator run on real time.
  const clock = FakeTimers.install({ toFake: ['Date'] })
  t.teardown(() => clock.uninstall())
  const upstream = await startTestSimulator(t)
  const acme = makeTenant('acme')
  const logs = logCollector()
  const app = await buildTestApp(t, {
    upstreamUrl: upstream.url,
    upstreamKey: TEST_UPSTREAM_KEY,
    tenants: [acme],
    config: { upstreamBreakerFailures: 3, upstreamBreakerOpenMs: 10_000, upstreamRetryAttempts: 1 },
    logger: { level: 'info', stream: logs.stream }
  })
  const headers = { authorization: acme.authorization }
  const create = () => app.inject({ method: 'POST', url: '/v1/videos/generations', headers, payload: validBody })
  const taskId = (await create()).json().id as string
  const read = () => app.inject({ method: 'GET', url: `/v1/tasks/${taskId}`, headers })
  const readiness = async () => (await app.inject({ method: 'GET', url: '/readyz' })).json()
  const breakerLines = () => logs.lines.filter((line) => line.breaker !== undefined).map((line) => ({ level: line.level, breaker: line.breaker, msg: line.msg }))
  const openAnswer = (seconds: number) => ({
    status: 503, code: 'upstream_unavailable', type: 'upstream_error', message: `The video provider is failing; the gateway is not calling it for the next ${seconds} seconds.`
  })

  t.test('4xx answers never open it', async (t) => {
    upstream.simulator.faults.push({ route: 'create', status: 400, times: 5 })
    for (let i = 0; i < 5; i++) t.equal((await create()).statusCode, 400)
    t.equal((await readiness()).checks.upstream, 'closed')
  })

  t.test('3 consecutive failures (5xx, a reset) open it', async (t) => {
    upstream.simulator.faults.push({ route: 'create', status: 503 })
    upstream.simulator.faults.push({ route: 'task', reset: 'before-headers' })
    upstream.simulator.faults.push({ route: 'create', status: 500 })
    t.equal((await create()).statusCode, 502)
    t.equal((await read()).statusCode, 502)
    t.equal((await readiness()).checks.upstream, 'closed', 'two are not enough')
    t.equal((await create()).statusCode, 502)
    const ready = await app.inject({ method: 'GET', url: '/readyz' })
    t.equal(ready.statusCode, 200, 'an open breaker does not make the instance unready')
    t.same(ready.json(), { status: 'ok', checks: { config: 'ok', store: 'memory', upstream: 'open' } })
    t.same(breakerLines(), [{ level: 40, breaker: 'open', msg: 'upstream circuit breaker opened after 3 consecutive failures' }], 'one warning')
  })

  t.test('while open: 503 at once, with Retry-After, and no upstream call', async (t) => {
    const before = { create: upstream.simulator.calls.create, task: upstream.simulator.calls.task }
    clock.tick(4_000)
    const created = await create()
    assertErrorResponse(t, created, openAnswer(6))
    t.equal(created.headers['retry-after'], '6')
    assertErrorResponse(t, await read(), openAnswer(6))
    for (let i = 0; i < 20; i++) await create()
    t.same({ create: upstream.simulator.calls.create, task: upstream.simulator.calls.task }, before, 'the upstream is left alone')
    t.equal(breakerLines().length, 1, 'and nothing more is logged about it')
    const errorLine = logs.lines.find((line) => line.request_id === created.headers['x-request-id'] && line.level === 50)
    t.match(errorLine, { code: 'upstream_unavailable', err: { code: 'VG_UPSTREAM_CIRCUIT_OPEN' } }, 'the log tells a breaker answer from an unreachable upstream')
  })

  t.test('after the pause, one probe; others wait; its success closes it', async (t) => {
    clock.tick(6_000)
    t.equal((await readiness()).checks.upstream, 'half-open')
    upstream.simulator.faults.push({ route: 'create', delayMs: 200 })
    const before = upstream.simulator.calls.create
    const probe = create()
    // Let the probe reach the upstream before the second caller comes.
    while (upstream.simulator.calls.create === before) await new Promise((resolve) => setImmediate(resolve))
    const waiting = await create()
    assertErrorResponse(t, waiting, openAnswer(1))
    t.equal((await probe).statusCode, 200)
    t.equal(upstream.simulator.calls.create - before, 1, 'only the probe called')
    t.equal((await readiness()).checks.upstream, 'closed')
    t.equal((await create()).statusCode, 200)
    t.same(breakerLines().slice(1), [
      { level: 30, breaker: 'half-open', msg: 'upstream circuit breaker half-open: letting one probe call through' },
      { level: 30, breaker: 'closed', msg: 'upstream circuit breaker closed: the upstream answers again' }
    ])
  })

  t.test('a failed probe opens it again, for a whole pause', async (t) => {
    upstream.simulator.faults.push({ route: 'create', status: 503, times: 4 })
    for (let i = 0; i < 3; i++) await create()
    clock.tick(10_000)
    t.equal((await create()).statusCode, 502, 'the probe failed')
    t.equal((await readiness()).checks.upstream, 'open')
    t.match(breakerLines().at(-1), { level: 40, breaker: 'open', msg: 'upstream circuit breaker re-opened: the probe call failed' })
    assertErrorResponse(t, await create(), openAnswer(10))
  })
})
