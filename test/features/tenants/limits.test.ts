import t, { type Test } from 'tap'
import { buildTestApp, makeTenant, startTestGateway, validBody, type TestTenant } from '../../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'
import { assertErrorResponse } from '../../helpers/assert-error.ts'

// 23:00 UTC: an hour before the daily budgets reset.
const lateEvening = Date.UTC(2026, 5, 15, 23, 0, 0)

async function setUp (t: Test, tenants: TestTenant[], staleMs = 60_000) {
  let clock = lateEvening
  const now = () => clock
  const upstream = await startTestSimulator(t, { taskDurationMs: 100_000, now })
  const app = await buildTestApp(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants, seams: { clock: now }, config: { taskConcurrencyStaleMs: staleMs } })
  return {
    upstream,
    app,
    advance (ms: number) { clock += ms },
    create: (tenant: TestTenant, body: Record<string, unknown> = validBody) =>
      app.inject({ method: 'POST', url: '/v1/videos/generations', headers: { authorization: tenant.authorization }, payload: body }),
    read: (tenant: TestTenant, id: string, suffix = '') => app.inject({ method: 'GET', url: `/v1/tasks/${id}${suffix}`, headers: { authorization: tenant.authorization } })
  }
}

t.test('per-tenant caps on n, duration and quality: 403 forbidden naming the field, before the upstream', async (t) => {
  const held = makeTenant('held', { maxN: 1, maxDuration: 6, allowedQualities: ['720p'] })
  const free = makeTenant('free')
  const { upstream, create } = await setUp(t, [held, free])

  assertErrorResponse(t, await create(held, { ...validBody, n: 2 }), { status: 403, code: 'forbidden', type: 'permission_error', message: '"n" may be at most 1 for this tenant.', param: 'n' })
  assertErrorResponse(t, await create(held, { ...validBody, duration: 8 }), { status: 403, code: 'forbidden', type: 'permission_error', message: '"duration" may be at most 6 seconds for this tenant.', param: 'duration' })
  assertErrorResponse(t, await create(held, { ...validBody, generation_type: 'REFERENCE', image_urls: ['https://example.com/a.png'] }), {
    status: 403, code: 'forbidden', type: 'permission_error', message: 'REFERENCE videos last 8 seconds; "duration" may be at most 6 seconds for this tenant.', param: 'duration'
  })
  assertErrorResponse(t, await create(held, { ...validBody, quality: '1080p' }), { status: 403, code: 'forbidden', type: 'permission_error', message: 'Quality "1080p" is not enabled for this tenant; allowed: 720p.', param: 'quality' })
  t.equal(upstream.simulator.calls.create, 0, 'nothing reached the upstream')

  t.equal((await create(held, { ...validBody, n: 1, duration: 6, quality: '720p' })).statusCode, 200, 'at the caps is allowed')
  t.equal((await create(held)).statusCode, 200, 'the defaults (n 1, 4 s, 720p) are within them')
  t.equal((await create(free, { ...validBody, n: 2, duration: 8, quality: '4k' })).statusCode, 200, 'a tenant without caps is not held')
})

t.test('maxConcurrentTasks: a task holds its slot until it is seen finished, or goes stale', async (t) => {
  const acme = makeTenant('acme', { maxConcurrentTasks: 2 })
  const other = makeTenant('other', { maxConcurrentTasks: 1 })
  const { upstream, create, read, advance } = await setUp(t, [acme, other], 300_000)

  const first = (await create(acme)).json().id as string
  t.equal((await create(acme)).statusCode, 200)
  const refused = await create(acme)
  assertErrorResponse(t, refused, { status: 429, code: 'concurrency_limit_exceeded', type: 'rate_limit_error', message: 'This tenant already has 2 tasks running, its limit; create again once one has finished.' })
  t.equal(upstream.simulator.calls.create, 2, 'the refused create never reached the upstream')
  t.equal((await create(other)).statusCode, 200, 'each tenant has its own slots')

  t.equal((await read(acme, first)).json().status, 'pending', 'a running task read keeps its slot')
  t.equal((await create(acme)).statusCode, 429)

  advance(100_000)
  t.equal((await read(acme, first)).json().status, 'completed')
  t.equal((await create(acme)).statusCode, 200, 'the completed task freed its slot')
  t.equal((await create(acme)).statusCode, 429, 'one slot only: the other task was not read yet')

  advance(300_000)
  t.equal((await create(acme)).statusCode, 200, 'past TASK_CONCURRENCY_STALE_MS, unread tasks no longer hold slots')
})

t.test('a failed create gives its slot and its charge back', async (t) => {
  const acme = makeTenant('acme', { maxConcurrentTasks: 1, budget: { videoSecondsPerDay: 4 } })
  const { upstream, create } = await setUp(t, [acme])
  upstream.simulator.faults.push({ route: 'create', status: 500 })
  t.equal((await create(acme)).statusCode, 502)
  t.equal((await create(acme)).statusCode, 200, 'slot and video-seconds were released')
})

t.test('budgets: 429 budget_exceeded with Retry-After until the window resets', async (t) => {
  const seconds = makeTenant('seconds', { budget: { videoSecondsPerDay: 8 } })
  const credits = makeTenant('credits', { budget: { creditsPerMonth: 30 } })
  const { upstream, create, advance } = await setUp(t, [seconds, credits])

  t.equal((await create(seconds)).statusCode, 200)
  t.equal((await create(seconds)).statusCode, 200)
  const refused = await create(seconds)
  assertErrorResponse(t, refused, {
    status: 429,
    code: 'budget_exceeded',
    type: 'rate_limit_error',
    message: 'This create (4 video-seconds) would pass the tenant\'s daily budget of 8 video-seconds; it resets at 2026-06-16T00:00:00.000Z (in 3600 s).'
  })
  t.equal(refused.headers['retry-after'], '3600')
  t.equal(upstream.simulator.calls.create, 2)
  advance(3_600_000)
  t.equal((await create(seconds)).statusCode, 200, 'a new UTC day')

  // The upstream charges 25.7 for this one (more than the 9.6 estimate): the settled figure is what counts.
  upstream.simulator.faults.push({
    route: 'create',
    status: 200,
    body: { created: 1, id: 'task-unified-1-settled1', model: validBody.model, object: 'video.generation.task', progress: 0, status: 'pending', type: 'video', task_info: { can_cancel: true }, usage: { billing_rule: 'per_call', credits_reserved: 25.7, user_group: 'default' } }
  })
  t.equal((await create(credits)).statusCode, 200)
  const overMonth = await create(credits)
  assertErrorResponse(t, overMonth, {
    status: 429,
    code: 'budget_exceeded',
    type: 'rate_limit_error',
    message: 'This create (about 9.6 credits) would pass the tenant\'s monthly budget of 30 credits; it resets at 2026-07-01T00:00:00.000Z (in 1296000 s).'
  })
  t.equal(overMonth.headers['retry-after'], '1296000')
})

t.test('a task seen ending on an event stream, or by a long-poll, frees its slot', async (t) => {
  let clock = lateEvening
  const now = () => clock
  const upstream = await startTestSimulator(t, { taskDurationMs: 100_000, now })
  const acme = makeTenant('acme', { maxConcurrentTasks: 1 })
  const { url } = await startTestGateway(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [acme], seams: { clock: now }, config: { taskStatusTtlMs: 50 } })
  const headers = { authorization: acme.authorization, 'content-type': 'application/json' }
  const create = () => fetch(`${url}/v1/videos/generations`, { method: 'POST', headers, body: JSON.stringify(validBody) })

  const streamed = (await (await create()).json() as { id: string }).id
  t.equal((await create()).status, 429)
  const stream = await fetch(`${url}/v1/tasks/${streamed}/events`, { headers })
  t.equal(stream.status, 200)
  // The stream is open on a running task; the task ends while it is watched.
  setTimeout(() => { clock += 100_000 }, 150)
  t.match(await stream.text(), /event: end\ndata: \{"status":"completed"\}/)
  const next = await create()
  t.equal(next.status, 200, 'the stream saw it end: the slot is free')

  const waited = (await next.json() as { id: string }).id
  t.equal((await create()).status, 429)
  setTimeout(() => { clock += 100_000 }, 150)
  const read = await fetch(`${url}/v1/tasks/${waited}?wait=10`, { headers })
  t.equal((await read.json() as { status: string }).status, 'completed')
  t.equal((await create()).status, 200, 'the long-poll saw it end: the slot is free')
})

t.test('taskFinished(), the hook for callbacks: once per task, with the final credits', async (t) => {
  const acme = makeTenant('acme', { maxConcurrentTasks: 1, budget: { creditsPerDay: 15 } })
  const { app, create } = await setUp(t, [acme])
  const scopedId = (await create(acme)).json().id as string
  const upstreamTaskId = app.taskIds.unscope(acme.id, scopedId) as string
  t.equal((await create(acme)).json().error.code, 'concurrency_limit_exceeded')

  await app.tenantUsage.taskFinished({ tenantId: acme.id, upstreamTaskId, status: 'processing' })
  t.equal((await create(acme)).json().error.code, 'concurrency_limit_exceeded', 'a running status is ignored')
  // The upstream's final figure: 5 credits instead of the 9.6 reserved.
  await app.tenantUsage.taskFinished({ tenantId: acme.id, upstreamTaskId, status: 'completed', finalCredits: 5 })
  await app.tenantUsage.taskFinished({ tenantId: acme.id, upstreamTaskId, status: 'completed', finalCredits: 5 })

  const usage = await app.inject({ method: 'GET', url: '/v1/usage?from=2026-06-15&to=2026-06-15', headers: { authorization: acme.authorization } })
  t.same(usage.json().total, { requests: 4, tasks_created: 1, tasks_completed: 1, tasks_failed: 0, video_seconds: 4, credits: 5, archived_videos: 0, archived_bytes: 0 }, 'counted once, the charge corrected')
  t.equal((await create(acme)).statusCode, 200, 'slot free; 5 + 9.6 fits in the budget of 15 only because of the correction')
})
