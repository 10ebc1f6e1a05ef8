import t from 'tap'
import { buildTestApp, makeTenant, testGatewaySecret, validBody } from '../../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'
import { assertErrorResponse } from '../../helpers/assert-error.ts'

t.test('GET /v1/tasks/:task_id', async (t) => {
  let clock = Date.now()
  const upstream = await startTestSimulator(t, { taskDurationMs: 10_000, now: () => clock })
  const acme = makeTenant('acme')
  const globex = makeTenant('globex')
  // The gateway's status cache runs on the same clock, so each step reads the new state.
  const options = { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [acme, globex], seams: { clock: () => clock } }
  const app = await buildTestApp(t, options)
  const read = (id: string, authorization = acme.authorization, target = app) =>
    target.inject({ method: 'GET', url: `/v1/tasks/${encodeURIComponent(id)}`, headers: { authorization } })

  const created = await app.inject({ method: 'POST', url: '/v1/videos/generations', headers: { authorization: acme.authorization }, payload: { ...validBody, n: 2 } })
  const taskId: string = created.json().id
  const upstreamId = taskId.split('.')[0] as string

  t.test('the creating tenant reads its task through every state, id kept tenant-scoped', async (t) => {
    const pending = await read(taskId)
    t.equal(pending.statusCode, 200)
    t.match(pending.json(), { id: taskId, status: 'pending', progress: 0 })

    clock += 5_000
    const processing = (await read(taskId)).json()
    t.equal(processing.status, 'processing')
    t.ok(processing.progress > 0 && processing.progress < 100)

    clock += 6_000
    const completed = (await read(taskId)).json()
    t.match(completed, { id: taskId, status: 'completed', progress: 100, usage: { billing_rule: 'per_call' } })
    t.equal(completed.results.length, 2, 'one result per n')
    t.match(completed.results[0], /^http:\/\/127\.0\.0\.1:\d+\/files\//)
  })

  const notFound = { status: 404, code: 'not_found', type: 'invalid_request_error', message: 'Task not found.', param: 'task_id' }

  t.test('another tenant gets 404 for it, never 403', async (t) => {
    const calls = upstream.simulator.calls.task
    assertErrorResponse(t, await read(taskId, globex.authorization), notFound)
    t.equal(upstream.simulator.calls.task, calls, 'no upstream call')
  })

  t.test('forged, edited, raw upstream and unknown ids are 404', async (t) => {
    const calls = upstream.simulator.calls.task
    const tag = taskId.slice(upstreamId.length + 1)
    // The simulator's ids end in a random character: the edit must change it.
    const otherLast = upstreamId.endsWith('x') ? 'y' : 'x'
    for (const id of [
      upstreamId, // the raw upstream id
      `${upstreamId}.${'A'.repeat(22)}`, // forged tag
      `${upstreamId.slice(0, -1)}${otherLast}.${tag}`, // another upstream id under this tag
      `${taskId}x`,
      'task-unified-1-aaaaaaaa.AAAAAAAAAAAAAAAAAAAAAA',
      'a'.repeat(500),
      '%00',
      '../../etc/passwd'
    ]) {
      assertErrorResponse(t, await read(id), notFound)
    }
    // '..' is resolved away by URL normalisation: no route, still a 404 in the format.
    assertErrorResponse(t, await read('..'), { status: 404, code: 'not_found', type: 'invalid_request_error', message: 'No route GET /v1/.' })
    t.equal(upstream.simulator.calls.task, calls, 'no upstream call for an id that does not verify')
  })

  t.test('an id whose tag verifies but that the upstream does not know is 404 too', async (t) => {
    const unknown = app.taskIds.scope(acme.id, 'task-unified-1-zzzzzzzz')
    assertErrorResponse(t, await read(unknown), { status: 404, code: 'not_found', type: 'invalid_request_error', message: 'Task not found.' })
  })

  t.test('an overlong id is rejected by the schema', async (t) => {
    assertErrorResponse(t, await read('a'.repeat(513)), { status: 400, code: 'invalid_request', type: 'invalid_request_error', message: /must NOT have more than 512 characters/, param: 'task_id' })
  })

  t.test('ids survive a restart and work on another instance with the same secret, and on none with another', async (t) => {
    const restarted = await buildTestApp(t, options)
    t.equal((await read(taskId, acme.authorization, restarted)).statusCode, 200)
    const otherSecret = await buildTestApp(t, { ...options, config: { gatewaySecret: 'another-secret-that-is-long-enough-0123456789' } })
    t.equal((await read(taskId, acme.authorization, otherSecret)).statusCode, 404)
    const rotated = await buildTestApp(t, { ...options, config: { gatewaySecret: `another-secret-that-is-long-enough-0123456789,${testGatewaySecret}` } })
    t.equal((await read(taskId, acme.authorization, rotated)).statusCode, 200, 'a retired secret still verifies during rotation')
  })

  t.test('fields the gateway does not know pass through unchanged', async (t) => {
    // A task the gateway has not cached yet (the first one is cached as completed).
    const fresh = (await app.inject({ method: 'POST', url: '/v1/videos/generations', headers: { authorization: acme.authorization }, payload: validBody })).json().id as string
    const extra = { id: app.taskIds.unscope(acme.id, fresh), status: 'processing', progress: 40, object: 'video.generation.task', brand_new_field: { nested: [1, 'two'] }, eta_text: 'soon' }
    upstream.simulator.faults.push({ route: 'task', status: 200, body: extra })
    const response = await read(fresh)
    t.equal(response.statusCode, 200)
    t.same(response.json(), { ...extra, id: fresh })
  })

  t.test('a failed task carries the upstream error', async (t) => {
    const failing = await app.inject({ method: 'POST', url: '/v1/videos/generations', headers: { authorization: acme.authorization }, payload: { ...validBody, prompt: 'x [fail:content_policy_violation]' } })
    clock += 20_000
    const task = (await read(failing.json().id)).json()
    t.match(task, { status: 'failed', error: { code: 'content_policy_violation', type: 'task_error' } })
    t.notOk('results' in task)
  })
})
