import t from 'tap'
import { request } from 'undici'
import { buildSimulator } from '../../src/simulator/app.ts'
import { RESULT_TTL_MS, TASK_RETENTION_MS } from '../../src/simulator/tasks.ts'
import { sampleVideo } from '../../src/simulator/media.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../helpers/simulator.ts'

const AUTH = { authorization: `Bearer ${TEST_UPSTREAM_KEY}` }
const T0 = Date.UTC(2026, 0, 2, 3, 4, 5)
const CREATED = Math.floor(T0 / 1000)

function clock () {
  let now = T0
  return { now: () => now, advance (ms: number) { now += ms }, set (ms: number) { now = T0 + ms } }
}

async function post (url: string, body: unknown) {
  const res = await request(`${url}/v1/videos/generations`, { method: 'POST', headers: { ...AUTH, 'content-type': 'application/json' }, body: JSON.stringify(body) })
  return { status: res.statusCode, body: await res.body.json() as Record<string, any> }
}

async function get (url: string, path: string, headers: Record<string, string> = AUTH) {
  const res = await request(`${url}${path}`, { headers })
  return { status: res.statusCode, body: await res.body.json() as Record<string, any> }
}

t.test('pending, processing with rising progress, then completed with n results', async (t) => {
  const c = clock()
  const { url } = await startTestSimulator(t, { now: c.now, taskDurationMs: 10_000 })
  const created = await post(url, { model: 'veo-3.1-fast-generate-preview', prompt: 'a cat', n: 3, duration: 8 })
  t.equal(created.status, 200)
  const id = created.body.id as string
  const usage = { billing_rule: 'per_call', credits_reserved: 57.6, user_group: 'default' }
  const base = { created: CREATED, id, model: 'veo-3.1-fast-generate-preview', object: 'video.generation.task', type: 'video', usage }

  t.strictSame((await get(url, `/v1/tasks/${id}`)).body, {
    ...base, progress: 0, status: 'pending', task_info: { can_cancel: true, estimated_time: 10, video_duration: 8 }
  }, 'pending at first')
  c.set(999)
  t.equal((await get(url, `/v1/tasks/${id}`)).body.status, 'pending', 'still pending before 10 %')
  c.set(1000)
  t.strictSame((await get(url, `/v1/tasks/${id}`)).body, {
    ...base, progress: 10, status: 'processing', task_info: { can_cancel: true, estimated_time: 9, video_duration: 8 }
  }, 'processing from 10 %')
  c.set(5_500)
  t.strictSame((await get(url, `/v1/tasks/${id}`)).body, {
    ...base, progress: 55, status: 'processing', task_info: { can_cancel: true, estimated_time: 5, video_duration: 8 }
  })
  c.set(9_999)
  t.equal((await get(url, `/v1/tasks/${id}`)).body.progress, 99)
  c.set(10_000)
  const done = await get(url, `/v1/tasks/${id}`)
  t.equal(done.status, 200)
  t.strictSame(done.body, {
    created: CREATED,
    id,
    model: 'veo-3.1-fast-generate-preview',
    object: 'video.generation.task',
    progress: 100,
    results: [0, 1, 2].map((i) => `${url}/files/${id}-${i}.mp4`),
    status: 'completed',
    task_info: { can_cancel: false, video_duration: 8 },
    type: 'video',
    usage
  })
  t.same(Object.keys(done.body), ['created', 'id', 'model', 'object', 'progress', 'results', 'status', 'task_info', 'type', 'usage'])

  // Result files are served by the simulator itself.
  const file = await request(done.body.results[2])
  t.equal(file.statusCode, 200)
  t.equal(file.headers['content-type'], 'video/mp4')
  const bytes = Buffer.from(await file.body.arrayBuffer())
  t.equal(bytes.subarray(4, 8).toString('latin1'), 'ftyp')
  t.ok(bytes.equals(sampleVideo), 'the sample video the simulator ships')
  const out = await get(url, `/files/${id}-3.mp4`)
  t.equal(out.status, 404, 'index beyond n')
  t.strictSame(out.body, { error: { code: 'not_found', message: 'File not found or expired', type: 'invalid_request_error' } })

  // Links expire 24 h after completion.
  c.set(10_000 + RESULT_TTL_MS - 1)
  t.equal((await request(`${url}/files/${id}-0.mp4`)).statusCode, 200)
  c.set(10_000 + RESULT_TTL_MS)
  const expired = await request(`${url}/files/${id}-0.mp4`)
  t.equal(expired.statusCode, 404)
  await expired.body.dump()
  t.equal((await get(url, `/v1/tasks/${id}`)).body.status, 'completed', 'the task itself is still readable')
})

t.test('files are not served before completion or for unknown names', async (t) => {
  const c = clock()
  const { url } = await startTestSimulator(t, { now: c.now, taskDurationMs: 1000 })
  const { body } = await post(url, { model: 'veo-3.1-fast-generate-preview', prompt: 'x' })
  for (const path of [`/files/${body.id}-0.mp4`, '/files/task-unified-1-zzzzzzzz-0.mp4', '/files/whatever.mp4']) {
    const res = await get(url, path)
    t.equal(res.status, 404, path)
  }
})

t.test('result links follow the Host header', async (t) => {
  const simulator = await buildSimulator({ apiKey: TEST_UPSTREAM_KEY, taskDurationMs: 0 })
  t.teardown(() => simulator.app.close())
  const created = await simulator.app.inject({ method: 'POST', url: '/v1/videos/generations', headers: AUTH, payload: { model: 'veo-3.1-fast-generate-preview', prompt: 'x', n: 2 } })
  const id = created.json().id
  const res = await simulator.app.inject({ method: 'GET', url: `/v1/tasks/${id}`, headers: { ...AUTH, host: 'upstream.test:8123' } })
  t.strictSame(res.json().results, [`http://upstream.test:8123/files/${id}-0.mp4`, `http://upstream.test:8123/files/${id}-1.mp4`])
  const file = await simulator.app.inject({ method: 'GET', url: `/files/${id}-1.mp4` })
  t.equal(file.statusCode, 200)
  t.equal(file.headers['content-type'], 'video/mp4')
})

t.test('[fail:<code>] makes a task fail half-way with a task_error', async (t) => {
  const c = clock()
  const { url } = await startTestSimulator(t, { now: c.now, taskDurationMs: 10_000 })
  const { body } = await post(url, { model: 'veo-3.1-fast-generate-preview', prompt: 'something [fail:content_policy_violation] else' })
  const id = body.id as string
  c.set(4_999)
  t.equal((await get(url, `/v1/tasks/${id}`)).body.status, 'processing')
  c.set(5_000)
  const failed = await get(url, `/v1/tasks/${id}`)
  t.equal(failed.status, 200)
  t.strictSame(failed.body, {
    created: CREATED,
    error: { code: 'content_policy_violation', message: 'The content violates the usage policy', type: 'task_error' },
    id,
    model: 'veo-3.1-fast-generate-preview',
    object: 'video.generation.task',
    progress: 50,
    status: 'failed',
    task_info: { can_cancel: false, video_duration: 4 },
    type: 'video',
    usage: { billing_rule: 'per_call', credits_reserved: 9.6, user_group: 'default' }
  })
  c.set(60_000)
  t.strictSame((await get(url, `/v1/tasks/${id}`)).body, failed.body, 'failed is final')
  t.equal((await get(url, `/files/${id}-0.mp4`)).status, 404, 'no result file')

  const other = await post(url, { model: 'veo-3.1-fast-generate-preview', prompt: '[fail:some_new_code]' })
  c.advance(5_000)
  const read = await get(url, `/v1/tasks/${other.body.id}`)
  t.strictSame(read.body.error, { code: 'some_new_code', message: 'Task failed: some_new_code', type: 'task_error' }, 'undocumented codes pass through')
})

t.test('every documented failure code can be produced', async (t) => {
  const simulator = await buildSimulator({ apiKey: TEST_UPSTREAM_KEY, taskDurationMs: 0 })
  t.teardown(() => simulator.app.close())
  const codes = ['content_policy_violation', 'invalid_parameters', 'image_processing_error', 'image_dimension_mismatch', 'request_cancelled',
    'generation_failed_no_content', 'service_error', 'generation_timeout', 'resource_exhausted', 'quota_exceeded', 'service_unavailable',
    'resource_not_found', 'unknown_error']
  for (const code of codes) {
    const created = await simulator.app.inject({ method: 'POST', url: '/v1/videos/generations', headers: AUTH, payload: { model: 'veo-3.1-fast-generate-preview', prompt: `[fail:${code}]` } })
    const task = (await simulator.app.inject({ method: 'GET', url: `/v1/tasks/${created.json().id}`, headers: AUTH })).json()
    t.equal(task.status, 'failed')
    t.equal(task.error.code, code)
    t.equal(task.error.type, 'task_error')
    t.notOk(task.error.message.startsWith('Task failed'), `${code} has its own message`)
    t.notOk('results' in task)
  }
})

t.test('invalid and unknown task ids', async (t) => {
  const c = clock()
  const { url } = await startTestSimulator(t, { now: c.now })
  const invalid = await get(url, '/v1/tasks/task-12345')
  t.equal(invalid.status, 400)
  t.strictSame(invalid.body, { error: { code: 'invalid_task_id', message: 'Invalid task ID format, task ID must start with task-unified-', type: 'invalid_request_error', param: 'task_id' } })
  const long = await get(url, `/v1/tasks/${'x'.repeat(300)}`)
  t.equal(long.status, 400, 'long ids reach the handler too')
  const unknown = await get(url, '/v1/tasks/task-unified-1757169743-7cvnl5zw')
  t.equal(unknown.status, 404)
  t.strictSame(unknown.body, { error: { code: 'task_not_found', message: 'Task not found', type: 'invalid_request_error' } })

  const { body } = await post(url, { model: 'veo-3.1-fast-generate-preview', prompt: 'x' })
  c.set(TASK_RETENTION_MS)
  await post(url, { model: 'veo-3.1-fast-generate-preview', prompt: 'y' })
  t.equal((await get(url, `/v1/tasks/${body.id}`)).status, 404, 'old tasks are eventually forgotten')
})
