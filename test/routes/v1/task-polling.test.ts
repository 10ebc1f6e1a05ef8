import { connect } from 'node:net'
import t from 'tap'
import { buildTestApp, makeTenant, startTestGateway, validBody } from '../../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'
import { scrape, scrapeUntil, testMetricsToken } from '../../helpers/metrics.ts'
import { assertErrorResponse } from '../../helpers/assert-error.ts'
import { redisForTests } from '../../helpers/redis.ts'

const redis = await redisForTests()
const skip = 'skip' in redis ? redis.skip : false

/** Reads of one task that do not multiply: coalescing, the status cache, ETags, ?wait=. */
t.test('GET /v1/tasks/:task_id through the status cache (memory)', async (t) => {
  let clock = Date.now()
  const upstream = await startTestSimulator(t, { taskDurationMs: 100_000, now: () => clock })
  const acme = makeTenant('acme', { readRateLimit: { max: 10_000, timeWindow: 60_000 } })
  const globex = makeTenant('globex')
  const app = await buildTestApp(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [acme, globex], seams: { clock: () => clock } })
  const create = async (tenant = acme) => (await app.inject({ method: 'POST', url: '/v1/videos/generations', headers: { authorization: tenant.authorization }, payload: validBody })).json().id as string
  const read = (id: string, headers: Record<string, string> = {}, tenant = acme) =>
    app.inject({ method: 'GET', url: `/v1/tasks/${id}`, headers: { authorization: tenant.authorization, ...headers } })
  const taskCalls = () => upstream.simulator.calls.task

  t.test('100 concurrent reads of one task: one upstream call, the same answer for all', async (t) => {
    const id = await create()
    const before = taskCalls()
    const answers = await Promise.all(Array.from({ length: 100 }, () => read(id)))
    t.equal(taskCalls() - before, 1)
    t.ok(answers.every((answer) => answer.statusCode === 200 && answer.body === answers[0]?.body))
    t.equal(answers[0]?.json().id, id, 'the tenant-scoped id, not the upstream one')
  })

  t.test('a running task is reused for TASK_STATUS_TTL_MS, then read again', async (t) => {
    const id = await create()
    clock += 20_000
    const before = taskCalls()
    const first = await read(id)
    t.match(first.json(), { status: 'processing', progress: 20 })
    t.equal(first.headers['cache-control'], 'private, no-cache')
    clock += 999
    t.equal((await read(id)).json().progress, 20, 'within the TTL: the cached answer')
    t.equal(taskCalls() - before, 1)
    clock += 2
    t.equal((await read(id)).json().progress, 21, 'past it: the upstream again')
    t.equal(taskCalls() - before, 2)
  })

  t.test('a finished task is kept for TASK_TERMINAL_TTL_MS', async (t) => {
    const id = await create()
    clock += 100_000
    const before = taskCalls()
    const done = await read(id)
    t.equal(done.json().status, 'completed')
    t.equal(done.headers['cache-control'], 'private, max-age=86400')
    clock += 3_600_000
    const later = await read(id)
    t.equal(later.body, done.body)
    t.equal(later.headers['cache-control'], 'private, max-age=82800', 'max-age counts down')
    t.equal(taskCalls() - before, 1, 'an hour later: still no second call')
    clock += 23 * 3_600_000 + 1
    await read(id)
    t.equal(taskCalls() - before, 2, 'after 24 h: asked again')
  })

  t.test('ETag and If-None-Match', async (t) => {
    const id = await create()
    const first = await read(id)
    const etag = first.headers.etag as string
    t.match(etag, /^"[A-Za-z0-9_-]{27}"$/)
    const same = await read(id, { 'if-none-match': etag })
    t.equal(same.statusCode, 304)
    t.equal(same.body, '')
    t.equal(same.headers.etag, etag)
    t.equal(same.headers['cache-control'], 'private, no-cache')
    t.equal((await read(id, { 'if-none-match': `"other", W/${etag}` })).statusCode, 304, 'a list, and the weak form, match too')
    t.equal((await read(id, { 'if-none-match': '"stale"' })).statusCode, 200)
    t.equal((await read(id, { 'if-none-match': '*' })).statusCode, 304, '* matches any current answer (RFC 9110 13.1.2)')
    clock += 50_000
    const changed = await read(id, { 'if-none-match': etag })
    t.equal(changed.statusCode, 200, 'once the task moved, the full answer')
    t.not(changed.headers.etag, etag)
  })

  t.test('the cache never crosses tenants', async (t) => {
    const id = await create(acme)
    const before = taskCalls()
    t.equal((await read(id)).statusCode, 200)
    assertErrorResponse(t, await read(id, {}, globex), { status: 404, code: 'not_found', type: 'invalid_request_error', message: 'Task not found.', param: 'task_id' })
    const forged = id.replace(/.$/, (last) => last === 'A' ? 'B' : 'A')
    assertErrorResponse(t, await read(forged), { status: 404, code: 'not_found', type: 'invalid_request_error', message: 'Task not found.', param: 'task_id' })
    t.equal(taskCalls() - before, 1, 'refused before the cache is even looked at')
    // Globex's own task: a separate entry, its own id in the answer.
    const theirs = await create(globex)
    const answer = await read(theirs, {}, globex)
    t.equal(answer.json().id, theirs)
    t.not(answer.json().id, id)
  })

  t.test('?wait= is validated', async (t) => {
    const id = await create()
    for (const wait of ['61', '-1', '1.5', 'abc', '']) {
      const answer = await app.inject({ method: 'GET', url: `/v1/tasks/${id}?wait=${wait}`, headers: { authorization: acme.authorization } })
      assertErrorResponse(t, answer, { status: 400, code: 'invalid_request', type: 'invalid_request_error', message: /"wait" must match pattern/, param: 'wait' })
    }
    t.equal((await app.inject({ method: 'GET', url: `/v1/tasks/${id}?wait=0`, headers: { authorization: acme.authorization } })).statusCode, 200, 'wait=0 answers at once')
  })
})

t.test('?wait= over a real socket: answers on a change, or at the deadline with the current state', async (t) => {
  let clock = Date.now()
  const upstream = await startTestSimulator(t, { taskDurationMs: 100_000, now: () => clock })
  const acme = makeTenant('acme')
  // A short status TTL: the watch polls every 50 ms (real time).
  const { url } = await startTestGateway(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [acme], config: { taskStatusTtlMs: 50, metricsToken: testMetricsToken } })
  const headers = { authorization: acme.authorization }
  const id = (await (await fetch(`${url}/v1/videos/generations`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify(validBody) })).json() as { id: string }).id
  clock += 20_000
  const before = await (await fetch(`${url}/v1/tasks/${id}`, { headers })).json() as { progress: number }
  t.equal(before.progress, 20)

  t.test('a change ends the wait', async (t) => {
    const waiting = fetch(`${url}/v1/tasks/${id}?wait=30`, { headers })
    setTimeout(() => { clock += 5_000 }, 300)
    const started = performance.now()
    const answer = await waiting
    t.equal(answer.status, 200)
    t.match(await answer.json(), { id, status: 'processing', progress: 25 })
    t.ok(performance.now() - started < 25_000, 'well before its 30 s')
    t.equal(await scrape(url, 'vg_task_watches'), 0, 'the watch ended with its last waiter')
  })

  t.test('no change: the current state at the deadline', async (t) => {
    const started = performance.now()
    const answer = await fetch(`${url}/v1/tasks/${id}?wait=1`, { headers })
    t.ok(performance.now() - started >= 900, 'it waited')
    t.match(await answer.json(), { id, progress: 25 })
  })

  t.test('a finished task answers at once', async (t) => {
    clock += 100_000
    const answer = await fetch(`${url}/v1/tasks/${id}?wait=60`, { headers })
    t.match(await answer.json(), { status: 'completed', progress: 100 })
  })

  t.test('many waiters on one task: one poll loop, one upstream call per interval', async (t) => {
    const other = (await (await fetch(`${url}/v1/videos/generations`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify(validBody) })).json() as { id: string }).id
    const callsBefore = upstream.simulator.calls.task
    const started = performance.now()
    const waiters = Array.from({ length: 50 }, async () => await fetch(`${url}/v1/tasks/${other}?wait=1`, { headers }).then(async (answer) => await answer.json() as { id: string }))
    const answers = await Promise.all(waiters)
    const seconds = (performance.now() - started) / 1000
    t.ok(answers.every((answer) => answer.id === other))
    const calls = upstream.simulator.calls.task - callsBefore
    // one read when they arrive, then one per 50 ms while they wait (1 s): about 21, whatever the number of waiters
    t.ok(calls <= Math.ceil(seconds * 20) + 3, `${calls} upstream calls in ${seconds.toFixed(2)} s for 50 waiters`)
  })

  t.test('a waiter that goes away stops its watch', async (t) => {
    const socket = connect(Number(new URL(url).port), '127.0.0.1')
    socket.on('error', () => {})
    socket.write(`GET /v1/tasks/${await newTask()}?wait=30 HTTP/1.1\r\nhost: x\r\nauthorization: ${acme.authorization}\r\n\r\n`)
    t.equal(await scrapeUntil(url, 'vg_task_watches', 1), 1)
    socket.destroy()
    t.equal(await scrapeUntil(url, 'vg_task_watches', 0), 0)
  })

  async function newTask (): Promise<string> {
    return (await (await fetch(`${url}/v1/videos/generations`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify(validBody) })).json() as { id: string }).id
  }
})

t.test('two instances sharing Redis: 100 concurrent reads, one upstream call', { skip }, async (t) => {
  if ('skip' in redis) return
  const upstream = await startTestSimulator(t, { taskDurationMs: 100_000 })
  const acme = makeTenant('acme', { readRateLimit: { max: 10_000, timeWindow: 60_000 } })
  const options = { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [acme], config: { redisUrl: redis.url, taskStatusTtlMs: 5000 } }
  const instances = [await buildTestApp(t, options), await buildTestApp(t, options)]
  const headers = { authorization: acme.authorization }
  const id = (await instances[0]!.inject({ method: 'POST', url: '/v1/videos/generations', headers, payload: validBody })).json().id as string
  const before = upstream.simulator.calls.task
  const answers = await Promise.all(Array.from({ length: 100 }, async (_, i) => await instances[i % 2]!.inject({ method: 'GET', url: `/v1/tasks/${id}`, headers })))
  t.ok(answers.every((answer) => answer.statusCode === 200 && answer.json().id === id))
  t.equal(upstream.simulator.calls.task - before, 1)
  t.equal(new Set(answers.map((answer) => answer.headers.etag)).size, 1, 'one snapshot, one ETag, on both instances')
})
