import t from 'tap'
import { buildTestApp, makeTenant, validBody, type TestTenant } from '../../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'
import { assertErrorResponse } from '../../helpers/assert-error.ts'
import { startMetricsListener } from '../../../src/features/observability/metrics-listener.ts'

const metricsToken = 'metrics-token-0123456789abcdef'

/** The value of one series, by its exact name and labels as prom-client prints them; undefined if absent. */
function series (text: string, nameAndLabels: string): number | undefined {
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${nameAndLabels} `))
  return line === undefined ? undefined : Number(line.slice(nameAndLabels.length + 1))
}

t.test('GET /metrics after real traffic', async (t) => {
  const upstream = await startTestSimulator(t, { taskDurationMs: 100_000 })
  const acme = makeTenant('acme', { budget: { videoSecondsPerDay: 8 }, rateLimit: { max: 3, timeWindow: 60_000 } })
  const globex = makeTenant('globex', { maxConcurrentTasks: 1 })
  // No limits: only the upstream decides its answers.
  const free = makeTenant('free')
  const app = await buildTestApp(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [acme, globex, free], config: { metricsToken, upstreamBreakerFailures: 2 } })
  const create = (tenant: TestTenant) => app.inject({ method: 'POST', url: '/v1/videos/generations', headers: { authorization: tenant.authorization }, payload: validBody })
  const scrape = async () => {
    const response = await app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${metricsToken}` } })
    t.equal(response.statusCode, 200)
    t.match(response.headers['content-type'], /^text\/plain; version=0\.0\.4/)
    return response.body
  }

  const taskId = (await create(acme)).json().id as string
  t.equal((await create(acme)).statusCode, 200)
  t.equal((await create(acme)).json().error.code, 'budget_exceeded')
  t.equal((await app.inject({ method: 'GET', url: `/v1/tasks/${taskId}`, headers: { authorization: acme.authorization } })).statusCode, 200)
  t.equal((await create(acme)).json().error.code, 'rate_limit_exceeded', 'the fourth create of a window of 3')
  t.equal((await create(globex)).statusCode, 200)
  t.equal((await create(globex)).json().error.code, 'concurrency_limit_exceeded')
  t.equal((await app.inject({ method: 'GET', url: '/v1/tasks/nope', headers: { authorization: 'Bearer wrong' } })).statusCode, 401)

  const text = await scrape()
  t.equal(series(text, `vg_http_requests_total{route="/v1/videos/generations",method="POST",status="200",tenant="${acme.id}"}`), 2)
  t.equal(series(text, `vg_http_requests_total{route="/v1/videos/generations",method="POST",status="429",tenant="${acme.id}"}`), 2)
  t.equal(series(text, `vg_http_requests_total{route="/v1/tasks/:task_id",method="GET",status="200",tenant="${acme.id}"}`), 1, 'the route pattern, never the id')
  t.equal(series(text, 'vg_http_requests_total{route="/v1/tasks/:task_id",method="GET",status="401",tenant=""}'), 1, 'no tenant without a valid key')
  t.equal(series(text, `vg_tenant_rejections_total{reason="budget",tenant="${acme.id}"}`), 1)
  t.equal(series(text, `vg_tenant_rejections_total{reason="rate_limit",tenant="${acme.id}"}`), 1)
  t.equal(series(text, `vg_tenant_rejections_total{reason="concurrency",tenant="${globex.id}"}`), 1)
  t.equal(series(text, `vg_credits_charged_total{tenant="${acme.id}"}`), 19.2, 'two creates of 9.6 credits')
  t.equal(series(text, `vg_video_seconds_total{tenant="${globex.id}"}`), 4)
  t.equal(series(text, 'vg_upstream_request_duration_seconds_count{method="POST",outcome="ok"}'), 3)
  t.equal(series(text, 'vg_upstream_request_duration_seconds_count{method="GET",outcome="ok"}'), 1)
  t.equal(series(text, 'vg_http_requests_in_flight'), 1, 'the scrape itself')
  t.equal(series(text, 'vg_upstream_circuit_breaker_state{state="closed"}'), 1)
  t.equal(series(text, 'vg_upstream_circuit_breaker_state{state="open"}'), 0)
  t.equal(series(text, 'vg_redis_up'), -1, 'memory mode')
  t.equal(series(text, 'vg_redis_writes_behind_total'), 0, 'memory mode writes nothing behind an answer')
  t.notOk(text.includes(taskId.split('.')[0] as string), 'no task id in any label')
  t.notOk(text.includes(acme.key) || text.includes(TEST_UPSTREAM_KEY), 'no key anywhere')

  t.test('upstream errors are counted by the code they were mapped to; the breaker state follows', async (t) => {
    upstream.simulator.faults.push({ route: 'create', status: 401 })
    upstream.simulator.faults.push({ route: 'create', status: 402 })
    upstream.simulator.faults.push({ route: 'create', status: 500, times: 2 })
    const codes = []
    for (let i = 0; i < 5; i++) codes.push((await create(free)).json().error?.code)
    t.same(codes, ['upstream_auth_failed', 'upstream_quota_exhausted', 'upstream_error', 'upstream_error', 'upstream_unavailable'])
    const after = await scrape()
    t.equal(series(after, 'vg_upstream_errors_total{method="POST",code="upstream_auth_failed"}'), 1)
    t.equal(series(after, 'vg_upstream_errors_total{method="POST",code="upstream_quota_exhausted"}'), 1)
    t.equal(series(after, 'vg_upstream_errors_total{method="POST",code="upstream_error"}'), 2)
    t.equal(series(after, 'vg_upstream_errors_total{method="POST",code="upstream_circuit_open"}'), 1, 'the open breaker\'s refusals too')
    t.equal(series(after, 'vg_upstream_circuit_breaker_state{state="open"}'), 1)
  })

  t.test('the token is required on the main port', async (t) => {
    assertErrorResponse(t, await app.inject({ method: 'GET', url: '/metrics' }), { status: 401, code: 'unauthorized', type: 'authentication_error', message: /^Missing or invalid API key/ })
    assertErrorResponse(t, await app.inject({ method: 'GET', url: '/metrics', headers: { authorization: acme.authorization } }), { status: 401, code: 'unauthorized', type: 'authentication_error', message: /^Missing or invalid API key/ })
  })
})

t.test('without METRICS_TOKEN the main port does not serve /metrics; METRICS_PORT serves them on their own listener', async (t) => {
  const upstream = await startTestSimulator(t)
  const acme = makeTenant('acme')
  const app = await buildTestApp(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [acme] })
  t.equal((await app.inject({ method: 'GET', url: '/metrics' })).statusCode, 404)
  t.equal((await app.inject({ method: 'POST', url: '/v1/videos/generations', headers: { authorization: acme.authorization }, payload: validBody })).statusCode, 200)

  const listener = await startMetricsListener({ registry: app.metrics.registry, host: '127.0.0.1', port: 0 })
  t.teardown(listener.close)
  const scraped = await fetch(`${listener.url}/metrics`)
  t.equal(scraped.status, 200)
  t.match(scraped.headers.get('content-type'), /^text\/plain; version=0\.0\.4/)
  const text = await scraped.text()
  t.equal(series(text, `vg_http_requests_total{route="/v1/videos/generations",method="POST",status="200",tenant="${acme.id}"}`), 1)
  t.ok(text.includes('vg_process_cpu_seconds_total'), 'the process metrics too')

  const elsewhere = await fetch(`${listener.url}/v1/tasks`)
  t.equal(elsewhere.status, 404)
  t.match(await elsewhere.json(), { error: { code: 'not_found', type: 'invalid_request_error', message: 'Only GET /metrics is served on this port.' } })
})
