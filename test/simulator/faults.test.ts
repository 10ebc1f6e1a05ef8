import t, { type Test } from 'tap'
import { Agent, request, type Dispatcher } from 'undici'
import { buildSimulator } from '../../src/simulator/app.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../helpers/simulator.ts'
import { sampleVideo } from '../../src/simulator/media.ts'
import { startSimulator } from '../../src/simulator/start.ts'

const AUTH = { authorization: `Bearer ${TEST_UPSTREAM_KEY}` }
const BODY = JSON.stringify({ model: 'veo-3.1-fast-generate-preview', prompt: 'a cat' })

function client (t: Test): Dispatcher {
  const agent = new Agent({ keepAliveTimeout: 10_000 })
  t.teardown(() => agent.destroy())
  return agent
}

function create (url: string, dispatcher: Dispatcher, options: Partial<Dispatcher.RequestOptions> = {}) {
  return request(`${url}/v1/videos/generations`, {
    method: 'POST', headers: { ...AUTH, 'content-type': 'application/json' }, body: BODY, dispatcher, ...options
  } as Parameters<typeof request>[1])
}

function readTask (url: string, dispatcher: Dispatcher, options: Partial<Dispatcher.RequestOptions> = {}) {
  return request(`${url}/v1/tasks/task-unified-1757169743-7cvnl5zw`, { headers: AUTH, dispatcher, ...options } as Parameters<typeof request>[1])
}

async function until (condition: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !condition(); i++) await new Promise((resolve) => setTimeout(resolve, 5))
  if (!condition()) throw new Error('condition not reached')
}

t.test('status: documented default bodies per route, custom body and headers', async (t) => {
  const { url, simulator } = await startTestSimulator(t)
  const d = client(t)
  const cases: Array<[route: 'create' | 'task', status: number, body: unknown]> = [
    ['create', 400, { error: { code: 'invalid_request', message: 'Invalid request parameters', type: 'invalid_request_error' } }],
    ['create', 401, { error: { code: 'unauthorized', message: 'Invalid or expired token', type: 'authentication_error' } }],
    ['create', 402, { error: { code: 'insufficient_quota', message: 'Insufficient quota. Please top up your account.', type: 'insufficient_quota' } }],
    ['create', 403, { error: { code: 'model_access_denied', message: 'Token does not have access to model: veo-3.1-fast-generate-preview', type: 'invalid_request_error' } }],
    ['create', 413, { error: { code: 'request_too_large', message: 'Request entity too large', type: 'invalid_request_error' } }],
    ['create', 429, { error: { code: 'rate_limit_exceeded', message: 'Too many requests, please try again later', type: 'rate_limit_error' } }],
    ['create', 500, { error: { code: 'internal_error', message: 'Internal server error', type: 'api_error' } }],
    ['create', 502, { error: { code: 'upstream_error', message: 'Upstream service error', type: 'upstream_error' } }],
    ['create', 503, { error: { code: 'service_unavailable', message: 'No available channel for the requested model', type: 'api_error' } }],
    ['create', 524, { error: { code: 'timeout_error', message: 'Request timed out', type: 'timeout_error' } }],
    ['create', 418, { error: { code: 'invalid_request', message: "I'm a Teapot", type: 'invalid_request_error' } }],
    ['create', 504, { error: { code: 'internal_error', message: 'Gateway Timeout', type: 'api_error' } }],
    ['create', 200, {}],
    ['task', 400, { error: { code: 'invalid_task_id', message: 'Invalid task ID format, task ID must start with task-unified-', type: 'invalid_request_error', param: 'task_id' } }],
    ['task', 402, { error: { code: 'quota_exceeded', message: 'Quota exceeded', type: 'insufficient_quota' } }],
    ['task', 403, { error: { code: 'permission_denied', message: 'You do not have permission to access this task', type: 'invalid_request_error' } }],
    ['task', 404, { error: { code: 'task_not_found', message: 'Task not found', type: 'invalid_request_error' } }],
    ['task', 429, { error: { code: 'rate_limit_exceeded', message: 'Too many requests, please try again later', type: 'evo_api_error' } }],
    ['task', 500, { error: { code: 'internal_error', message: 'Internal server error', type: 'api_error' } }]
  ]
  for (const [route, status, body] of cases) {
    simulator.faults.push({ route, status })
    const res = route === 'create' ? await create(url, d) : await readTask(url, d)
    t.equal(res.statusCode, status, `${route} ${status}`)
    t.match(res.headers['content-type'], /^application\/json/)
    t.strictSame(await res.body.json(), body, `${route} ${status}`)
  }

  simulator.faults.push({ route: 'create', status: 429, body: { error: { code: 'x', message: 'custom' } }, headers: { 'retry-after': '7', 'x-extra': 'yes' } })
  const custom = await create(url, d)
  t.equal(custom.statusCode, 429)
  t.equal(custom.headers['retry-after'], '7')
  t.equal(custom.headers['x-extra'], 'yes')
  t.strictSame(await custom.body.json(), { error: { code: 'x', message: 'custom' } })

  simulator.faults.push({ route: 'task', status: 503, body: 'just a string', headers: { 'content-type': 'text/plain' } })
  const text = await readTask(url, d)
  t.equal(text.headers['content-type'], 'text/plain')
  t.equal(await text.body.text(), '"just a string"')

  const after = await create(url, d)
  t.equal(after.statusCode, 200, 'faults are used up')
  await after.body.dump()
})

t.test('faults come first: they apply whatever the key, body or route outcome', async (t) => {
  const { url, simulator } = await startTestSimulator(t)
  const d = client(t)
  simulator.faults.push({ route: 'create', status: 500 })
  const res = await request(`${url}/v1/videos/generations`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{not json', dispatcher: d })
  t.equal(res.statusCode, 500)
  await res.body.dump()
  t.equal(simulator.calls.create, 1)
  t.equal(simulator.calls.log[0]?.fault, 'status')
})

t.test('FIFO per route, times, Infinity and any', async (t) => {
  const { url, simulator } = await startTestSimulator(t)
  const d = client(t)
  simulator.faults.push({ route: 'task', status: 502 })
  simulator.faults.push({ route: 'create', status: 429, times: 2 })
  simulator.faults.push({ route: 'any', status: 503 })
  simulator.faults.push({ route: 'create', status: 500 })
  const statuses: number[] = []
  for (const call of [create, create, create, readTask, create, readTask, create]) {
    const res = await call(url, d)
    statuses.push(res.statusCode)
    await res.body.dump()
  }
  // create: 429, 429, 503 (any), task: 502, create: 500, task: 404 (real), create: 200
  t.strictSame(statuses, [429, 429, 503, 502, 500, 404, 200])
  t.equal(simulator.faults.size, 0)

  simulator.faults.push({ route: 'any', status: 500, times: Infinity })
  for (let i = 0; i < 5; i++) {
    const res = i % 2 === 0 ? await create(url, d) : await readTask(url, d)
    t.equal(res.statusCode, 500)
    await res.body.dump()
  }
  t.strictSame(simulator.faults.list(), [{ fault: { route: 'any', status: 500, times: Infinity }, remaining: Infinity }])
  simulator.faults.clear()
  const ok = await create(url, d)
  t.equal(ok.statusCode, 200)
  await ok.body.dump()
  t.equal(simulator.calls.create, 9)
  t.equal(simulator.calls.task, 4)
})

t.test('file route faults', async (t) => {
  const simulator = await buildSimulator({ apiKey: TEST_UPSTREAM_KEY, taskDurationMs: 0 })
  t.teardown(() => simulator.app.close())
  simulator.faults.push({ route: 'file', status: 500 })
  const res = await simulator.app.inject({ method: 'GET', url: '/files/x.mp4' })
  t.equal(res.statusCode, 500)
  t.equal(simulator.calls.file, 1)
})

t.test('delayMs waits, then answers normally', async (t) => {
  const { url, simulator } = await startTestSimulator(t)
  const d = client(t)
  simulator.faults.push({ route: 'create', delayMs: 300 })
  const started = performance.now()
  const res = await create(url, d)
  const took = performance.now() - started
  t.equal(res.statusCode, 200)
  t.equal((await res.body.json() as { status: string }).status, 'pending')
  t.ok(took >= 290, `took ${took} ms`)
  simulator.faults.push({ route: 'task', delayMs: 50 })
  const unauth = await request(`${url}/v1/tasks/task-unified-1-abcdefgh`, { dispatcher: d })
  t.equal(unauth.statusCode, 401, 'normal answer after the delay includes the auth check')
  await unauth.body.dump()
})

t.test('reset before headers is a socket error for the client', async (t) => {
  const { url, simulator } = await startTestSimulator(t)
  const d = client(t)
  simulator.faults.push({ route: 'create', reset: 'before-headers' })
  await t.rejects(create(url, d), { code: 'UND_ERR_SOCKET' })
  simulator.faults.push({ route: 'task', reset: 'before-headers' })
  await t.rejects(readTask(url, d), { code: 'UND_ERR_SOCKET' })
  const ok = await create(url, d)
  t.equal(ok.statusCode, 200, 'the next call works')
  await ok.body.dump()
})

t.test('reset after headers: headers arrive, the body fails', async (t) => {
  const { url, simulator } = await startTestSimulator(t)
  const d = client(t)
  simulator.faults.push({ route: 'task', reset: 'after-headers' })
  const res = await readTask(url, d)
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^application\/json/)
  await t.rejects(res.body.text(), { code: 'UND_ERR_SOCKET' })
})

t.test('garbage: 200 with raw text', async (t) => {
  const { url, simulator } = await startTestSimulator(t)
  const d = client(t)
  simulator.faults.push({ route: 'create', garbage: '{"created": 17571' })
  const res = await create(url, d)
  t.equal(res.statusCode, 200)
  t.equal(res.headers['content-type'], 'application/json')
  t.equal(await res.body.text(), '{"created": 17571')
  simulator.faults.push({ route: 'task', garbage: '<html>502 Bad Gateway</html>', contentType: 'text/html' })
  const html = await readTask(url, d)
  t.equal(html.headers['content-type'], 'text/html')
  t.equal(await html.body.text(), '<html>502 Bad Gateway</html>')
})

t.test('bodyBytes: 200 JSON of exactly that size', async (t) => {
  const { url, simulator } = await startTestSimulator(t)
  const d = client(t)
  for (const size of [0, 1, 2, 9, 10, 11, 5 * 1024 * 1024 + 7]) {
    simulator.faults.push({ route: 'task', bodyBytes: size })
    const res = await readTask(url, d)
    t.equal(res.statusCode, 200)
    t.match(res.headers['content-type'], /^application\/json/)
    t.equal(res.headers['content-length'], String(size))
    const text = await res.body.text()
    t.equal(Buffer.byteLength(text), size, `${size} bytes`)
    if (size > 0) t.doesNotThrow(() => JSON.parse(text), `${size} bytes is valid JSON`)
  }
})

t.test('bodyBytes: a client that gives up early does not break the simulator', async (t) => {
  const { url, simulator } = await startTestSimulator(t)
  const d = client(t)
  simulator.faults.push({ route: 'task', bodyBytes: 50 * 1024 * 1024 })
  const res = await readTask(url, d)
  const reader = res.body[Symbol.asyncIterator]()
  await reader.next()
  res.body.destroy()
  const ok = await readTask(url, d)
  t.equal(ok.statusCode, 404)
  await ok.body.dump()
})

t.test('echoAuthorization: 400 that leaks the received Authorization header', async (t) => {
  const { url, simulator } = await startTestSimulator(t)
  const d = client(t)
  simulator.faults.push({ route: 'create', echoAuthorization: true })
  const res = await create(url, d)
  t.equal(res.statusCode, 400)
  t.strictSame(await res.body.json(), {
    error: { code: 'invalid_request', message: `Malformed Authorization header: Bearer ${TEST_UPSTREAM_KEY}`, type: 'invalid_request_error' }
  })
})

t.test('hang never answers until the app closes', async (t) => {
  const { url, simulator, close } = await startTestSimulator(t)
  const d = client(t)
  simulator.faults.push({ route: 'task', hang: true })
  const pending = readTask(url, d)
  let settled = false
  pending.then(() => { settled = true }, () => { settled = true })
  await until(() => simulator.calls.task === 1)
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.notOk(settled, 'still waiting')
  const started = performance.now()
  await close()
  t.ok(performance.now() - started < 5000, 'close did not wait for the hung call (it would wait for ever)')
  await t.rejects(pending, { code: 'UND_ERR_SOCKET' })
})

t.test('bodyNeverEnds: headers and part of a body, then silence', async (t) => {
  const { url, simulator, close } = await startTestSimulator(t)
  const d = client(t)
  simulator.faults.push({ route: 'create', bodyNeverEnds: true })
  const res = await create(url, d, { bodyTimeout: 300 })
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^application\/json/)
  await t.rejects(res.body.text(), { code: 'UND_ERR_BODY_TIMEOUT' })

  simulator.faults.push({ route: 'create', bodyNeverEnds: true })
  const open = await create(url, d)
  const chunks: Buffer[] = []
  const reading = (async () => { for await (const chunk of open.body) chunks.push(chunk as Buffer) })()
  await until(() => chunks.length > 0)
  t.match(Buffer.concat(chunks).toString(), /^\{"created":/)
  const started = performance.now()
  await close()
  t.ok(performance.now() - started < 5000, 'close released it (it would wait for ever)')
  await t.rejects(reading)
})

t.test('socket faults through inject()', async (t) => {
  const simulator = await buildSimulator({ apiKey: TEST_UPSTREAM_KEY })
  simulator.faults.push({ route: 'create', reset: 'before-headers' })
  await t.rejects(simulator.app.inject({ method: 'POST', url: '/v1/videos/generations', headers: AUTH, payload: BODY }), { code: 'LIGHT_ECONNRESET' })
  simulator.faults.push({ route: 'task', garbage: 'nope' })
  const garbage = await simulator.app.inject({ method: 'GET', url: '/v1/tasks/x', headers: AUTH })
  t.equal(garbage.body, 'nope')
  simulator.faults.push({ route: 'task', hang: true })
  const hung = simulator.app.inject({ method: 'GET', url: '/v1/tasks/x', headers: AUTH })
  await until(() => simulator.calls.task === 2)
  await simulator.app.close()
  await t.rejects(hung, { code: 'LIGHT_ECONNRESET' })
})

t.test('push() rejects malformed faults', async (t) => {
  const simulator = await buildSimulator({ apiKey: TEST_UPSTREAM_KEY })
  t.teardown(() => simulator.app.close())
  const bad: unknown[] = [
    null,
    {},
    { route: 'create' },
    { route: 'nowhere', status: 500 },
    { route: 'create', status: 500, delayMs: 10 },
    { route: 'create', status: 99 },
    { route: 'create', status: 500, times: 0 },
    { route: 'create', status: 500, times: 1.5 },
    { route: 'create', status: 500, headers: { a: 1 } },
    { route: 'create', status: 500, contentType: 'text/plain' },
    { route: 'create', delayMs: -1 },
    { route: 'create', reset: 'sometimes' },
    { route: 'create', garbage: 42 },
    { route: 'create', hang: false },
    { route: 'create', bodyBytes: -5 },
    { route: 'create', echoAuthorization: 'yes' }
  ]
  for (const fault of bad) t.throws(() => simulator.faults.push(fault as never), { name: 'FaultError' }, JSON.stringify(fault))
  t.equal(simulator.faults.size, 0)
})

t.test('download faults: redirect, videoBytes (a padded, valid MP4), truncatedVideo, slowVideo', async (t) => {
  const sim = await startSimulator({ apiKey: 'sk-evo-faults', taskDurationMs: 0 })
  t.teardown(sim.close)
  const created = await request(`${sim.url}/v1/videos/generations`, { method: 'POST', headers: { authorization: 'Bearer sk-evo-faults', 'content-type': 'application/json' }, body: JSON.stringify({ model: 'veo-3.1-fast-generate-preview', prompt: 'x' }) })
  const { id } = await created.body.json() as { id: string }
  const file = `${sim.url}/files/${id}-0.mp4`
  sim.simulator.faults.push({ route: 'file', redirect: 'http://10.0.0.1/video.mp4' })
  const redirected = await request(file)
  t.equal(redirected.statusCode, 302)
  t.equal(redirected.headers.location, 'http://10.0.0.1/video.mp4')
  await redirected.body.dump()
  sim.simulator.faults.push({ route: 'file', videoBytes: 100_000 })
  const big = await request(file)
  const bytes = Buffer.from(await big.body.arrayBuffer())
  t.equal(big.headers['content-type'], 'video/mp4')
  t.equal(bytes.length, 100_000)
  t.equal(bytes.subarray(sampleVideo.length + 4, sampleVideo.length + 8).toString('latin1'), 'free', 'the padding is an ISO BMFF free box')
  t.equal(bytes.readUInt32BE(sampleVideo.length), 100_000 - sampleVideo.length)
  sim.simulator.faults.push({ route: 'file', truncatedVideo: true })
  const cut = await request(file)
  t.equal(cut.headers['content-length'], String(sampleVideo.length))
  await t.rejects(cut.body.arrayBuffer(), 'the body ends before its announced length')
  sim.simulator.faults.push({ route: 'file', slowVideo: 1, chunkBytes: 4096 })
  const slow = await request(file)
  t.equal(slow.headers['content-length'], String(sampleVideo.length))
  t.same(Buffer.from(await slow.body.arrayBuffer()), sampleVideo, 'the whole video, a chunk at a time')
  t.throws(() => sim.simulator.faults.push({ route: 'file', slowVideo: 10, chunkBytes: 0 } as never), /fault.chunkBytes must be a positive integer/)
  t.throws(() => sim.simulator.faults.push({ route: 'file', redirect: 'not a url' } as never), /fault.redirect must be an absolute URL/)
})
