import t from 'tap'
import { MockAgent } from 'undici'
import { buildTestApp, logCollector, makeTenant, validBody } from '../../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'
import { assertErrorResponse } from '../../helpers/assert-error.ts'
import type { Fault } from '../../../src/simulator/faults.ts'

/** Safe upstream retries, counted at the simulator. */
t.test('task reads are retried, creates are not', async (t) => {
  const upstream = await startTestSimulator(t)
  // The status cache's clock: withFaults moves it past the TTL, so every read asks the upstream.
  let clock = Date.now()
  const acme = makeTenant('acme', { rateLimit: { max: 1000, timeWindow: 60_000 }, readRateLimit: { max: 1000, timeWindow: 60_000 } })
  const logs = logCollector()
  const app = await buildTestApp(t, {
    upstreamUrl: upstream.url,
    upstreamKey: TEST_UPSTREAM_KEY,
    tenants: [acme],
    // The breaker is tested on its own; here it must not interfere.
    config: { upstreamTimeoutMs: 3000, upstreamRetryBaseDelayMs: 5, upstreamRetryMaxDelayMs: 1500, upstreamBreakerFailures: 0 },
    logger: { level: 'info', stream: logs.stream },
    seams: { clock: () => clock }
  })
  const headers = { authorization: acme.authorization }
  const created = await app.inject({ method: 'POST', url: '/v1/videos/generations', headers, payload: validBody })
  const taskId = created.json().id as string
  const read = () => app.inject({ method: 'GET', url: `/v1/tasks/${taskId}`, headers })
  const create = () => app.inject({ method: 'POST', url: '/v1/videos/generations', headers, payload: validBody })

  /** Runs `act` with `faults` queued; returns the answer and the upstream calls it cost. */
  async function withFaults (faults: Fault[], act: typeof read) {
    upstream.simulator.faults.clear()
    clock += 60_000
    for (const fault of faults) upstream.simulator.faults.push(fault)
    const before = { task: upstream.simulator.calls.task, create: upstream.simulator.calls.create }
    const started = performance.now()
    const response = await act()
    return {
      response,
      ms: performance.now() - started,
      taskCalls: upstream.simulator.calls.task - before.task,
      createCalls: upstream.simulator.calls.create - before.create
    }
  }

  t.test('GET: two 503s, then the answer', async (t) => {
    const { response, taskCalls } = await withFaults([{ route: 'task', status: 503, times: 2 }], read)
    t.equal(response.statusCode, 200)
    t.equal(response.json().id, taskId)
    t.equal(taskCalls, 3)
    const retryLines = logs.lines.filter((line) => line.request_id === response.headers['x-request-id'] && line.msg === 'retrying the upstream call')
    t.match(retryLines, [{ attempt: 1, reason: 'status 503' }, { attempt: 2, reason: 'status 503' }], 'each retry is logged with its reason')
  })

  t.test('GET: 502 and 504 are retried too', async (t) => {
    const { response, taskCalls } = await withFaults([{ route: 'task', status: 502 }, { route: 'task', status: 504 }], read)
    t.equal(response.statusCode, 200)
    t.equal(taskCalls, 3)
  })

  t.test('GET: resets before and after the headers are retried', async (t) => {
    const { response, taskCalls } = await withFaults([{ route: 'task', reset: 'before-headers' }, { route: 'task', reset: 'after-headers' }], read)
    t.equal(response.statusCode, 200)
    t.equal(taskCalls, 3)
  })

  t.test('GET: bounded in count (UPSTREAM_RETRY_ATTEMPTS = 3)', async (t) => {
    const { response, taskCalls } = await withFaults([{ route: 'task', status: 503, times: 5 }], read)
    assertErrorResponse(t, response, { status: 502, code: 'upstream_error', type: 'upstream_error', message: 'The video provider failed (status 503).' })
    t.equal(taskCalls, 3)
  })

  t.test('GET: a short Retry-After is waited for', async (t) => {
    const { response, taskCalls, ms } = await withFaults([{ route: 'task', status: 503, headers: { 'retry-after': '1' } }], read)
    t.equal(response.statusCode, 200)
    t.equal(taskCalls, 2)
    t.ok(ms >= 990, `waited ${Math.round(ms)} ms`)
  })

  t.test('GET: a Retry-After longer than UPSTREAM_RETRY_MAX_DELAY_MS is not', async (t) => {
    const { response, taskCalls, ms } = await withFaults([{ route: 'task', status: 503, headers: { 'retry-after': '30' } }], read)
    t.equal(response.statusCode, 502)
    t.equal(taskCalls, 1)
    t.ok(ms < 500, `answered at once (${Math.round(ms)} ms)`)
  })

  t.test('GET: 500, 4xx and unreadable answers are final', async (t) => {
    for (const fault of [{ route: 'task', status: 500 }, { route: 'task', status: 404 }, { route: 'task', status: 429 }, { route: 'task', garbage: 'nope' }] as Fault[]) {
      const { taskCalls } = await withFaults([fault], read)
      t.equal(taskCalls, 1, JSON.stringify(fault))
    }
  })

  t.test('POST: never retried once the request may have reached the upstream', async (t) => {
    for (const fault of [{ route: 'create', status: 503 }, { route: 'create', status: 502 }, { route: 'create', reset: 'before-headers' }, { route: 'create', reset: 'after-headers' }] as Fault[]) {
      const { response, createCalls } = await withFaults([fault], create)
      t.equal(response.statusCode, 502, JSON.stringify(fault))
      t.equal(createCalls, 1, `${JSON.stringify(fault)}: one upstream call`)
    }
  })
})

t.test('a timeout bounds the whole read, retries and waits included', async (t) => {
  const upstream = await startTestSimulator(t)
  const acme = makeTenant('acme')
  const app = await buildTestApp(t, {
    upstreamUrl: upstream.url,
    upstreamKey: TEST_UPSTREAM_KEY,
    tenants: [acme],
    config: { upstreamTimeoutMs: 800, upstreamRetryBaseDelayMs: 5, upstreamRetryMaxDelayMs: 5000, upstreamBreakerFailures: 0 }
  })
  const headers = { authorization: acme.authorization }
  const taskId = (await app.inject({ method: 'POST', url: '/v1/videos/generations', headers, payload: validBody })).json().id as string
  // A Retry-After (1 s) that the 800 ms budget cannot hold: the 502 comes back at once.
  upstream.simulator.faults.push({ route: 'task', status: 503, headers: { 'retry-after': '1' } })
  const started = performance.now()
  const response = await app.inject({ method: 'GET', url: `/v1/tasks/${taskId}`, headers })
  t.equal(response.statusCode, 502)
  t.ok(performance.now() - started < 800, 'within UPSTREAM_TIMEOUT_MS')
  t.equal(upstream.simulator.calls.task, 1)
  // A retry after a reset, whose second attempt hangs: the 504 names the whole budget.
  upstream.simulator.faults.push({ route: 'task', reset: 'before-headers' })
  upstream.simulator.faults.push({ route: 'task', hang: true })
  const hung = performance.now()
  const timedOut = await app.inject({ method: 'GET', url: `/v1/tasks/${taskId}`, headers })
  assertErrorResponse(t, timedOut, { status: 504, code: 'upstream_timeout', type: 'upstream_error', message: 'The video provider did not answer within 800 ms.' })
  const ms = performance.now() - hung
  // Two attempts with 800 ms each would take 1.6 s; the bound leaves a loaded machine room.
  t.ok(ms < 1400, `the two attempts took ${Math.round(ms)} ms in all, not 800 ms each`)
})

t.test('POST: a refused connection (nothing was sent) is retried, once', async (t) => {
  const origin = 'http://upstream.test'
  const agent = new MockAgent()
  agent.disableNetConnect()
  t.teardown(() => agent.close())
  const pool = agent.get(origin)
  const refused = () => Object.assign(new Error('connect ECONNREFUSED 10.0.0.1:443'), { code: 'ECONNREFUSED' })
  const task = { id: 'task-unified-1757169743-abcd1234', object: 'video.generation.task', created: 1757169743, model: 'veo-3.1-fast-generate-preview', status: 'pending', progress: 0 }
  const acme = makeTenant('acme')
  const app = await buildTestApp(t, {
    upstreamUrl: origin,
    upstreamKey: TEST_UPSTREAM_KEY,
    tenants: [acme],
    seams: { upstreamDispatcher: agent },
    config: { upstreamRetryBaseDelayMs: 5, upstreamBreakerFailures: 0 }
  })
  const create = () => app.inject({ method: 'POST', url: '/v1/videos/generations', headers: { authorization: acme.authorization }, payload: validBody })

  pool.intercept({ path: '/v1/videos/generations', method: 'POST' }).replyWithError(refused())
  pool.intercept({ path: '/v1/videos/generations', method: 'POST' }).reply(200, task, { headers: { 'content-type': 'application/json' } })
  const response = await create()
  t.equal(response.statusCode, 200, 'the second attempt went through')
  t.equal(agent.pendingInterceptors().length, 0, 'two attempts')

  pool.intercept({ path: '/v1/videos/generations', method: 'POST' }).replyWithError(refused())
  pool.intercept({ path: '/v1/videos/generations', method: 'POST' }).replyWithError(refused())
  pool.intercept({ path: '/v1/videos/generations', method: 'POST' }).reply(200, task, { headers: { 'content-type': 'application/json' } })
  assertErrorResponse(t, await create(), { status: 502, code: 'upstream_unavailable', type: 'upstream_error', message: 'The video provider could not be reached.' })
  t.equal(agent.pendingInterceptors().length, 1, 'only once: the third interceptor is unused')
})
