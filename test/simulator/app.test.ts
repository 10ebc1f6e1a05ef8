import t, { type Test } from 'tap'
import { buildSimulator } from '../../src/simulator/app.ts'
import type { SimulatorOptions } from '../../src/simulator/types.ts'

const KEY = 'sk-evo-test-upstream-key'
const AUTH = { authorization: `Bearer ${KEY}` }
const T0 = Date.UTC(2026, 0, 2, 3, 4, 5)

async function build (t: Test, options: Partial<SimulatorOptions> = {}) {
  const simulator = await buildSimulator({ apiKey: KEY, now: () => T0, ...options })
  t.teardown(() => simulator.app.close())
  return simulator
}

function create (simulator: Awaited<ReturnType<typeof buildSimulator>>, body: unknown, headers: Record<string, string> = AUTH) {
  return simulator.app.inject({ method: 'POST', url: '/v1/videos/generations', headers, payload: body as object })
}

const invalid = (message: string, param?: string) => ({
  error: { code: 'invalid_request', message, type: 'invalid_request_error', ...(param === undefined ? {} : { param }) }
})
const UNAUTHORIZED = { error: { code: 'unauthorized', message: 'Invalid or expired token', type: 'authentication_error' } }

t.test('rejects a missing, malformed or wrong bearer key with 401', async (t) => {
  const simulator = await build(t)
  const body = { model: 'veo-3.1-fast-generate-preview', prompt: 'a cat' }
  for (const headers of [{} as Record<string, string>, { authorization: KEY }, { authorization: 'Bearer sk-evo-wrong' }, { authorization: `Basic ${KEY}` }, { authorization: 'Bearer ' }]) {
    const res = await create(simulator, body, headers)
    t.equal(res.statusCode, 401, JSON.stringify(headers))
    t.same(res.json(), UNAUTHORIZED)
  }
  const task = await simulator.app.inject({ method: 'GET', url: '/v1/tasks/task-unified-1-abcdefgh', headers: { authorization: 'Bearer nope' } })
  t.equal(task.statusCode, 401)
  t.same(task.json(), UNAUTHORIZED)
  // The scheme is case-insensitive.
  const ok = await create(simulator, body, { authorization: `bearer ${KEY}` })
  t.equal(ok.statusCode, 200)
})

t.test('create answers the full upstream shape', async (t) => {
  const simulator = await build(t)
  const res = await create(simulator, { model: 'veo-3.1-fast-generate-preview', prompt: 'A cat playing piano' })
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^application\/json/)
  const body = res.json()
  const created = Math.floor(T0 / 1000)
  t.match(body.id, new RegExp(`^task-unified-${created}-[a-z0-9]{8}$`))
  t.strictSame(body, {
    created,
    id: body.id,
    model: 'veo-3.1-fast-generate-preview',
    object: 'video.generation.task',
    progress: 0,
    status: 'pending',
    task_info: { can_cancel: true, estimated_time: 20, video_duration: 4 },
    type: 'video',
    usage: { billing_rule: 'per_call', credits_reserved: 9.6, user_group: 'default' }
  })
  t.same(Object.keys(body), ['created', 'id', 'model', 'object', 'progress', 'status', 'task_info', 'type', 'usage'])
  const second = (await create(simulator, { model: 'veo-3.1-fast-generate-preview', prompt: 'x' })).json()
  t.not(second.id, body.id, 'ids are random')
})

t.test('credits and video duration follow duration, n, quality and audio', async (t) => {
  const simulator = await build(t, { taskDurationMs: 90_500 })
  const cases: Array<[Record<string, unknown>, number, number]> = [
    [{}, 9.6, 4],
    [{ n: 2 }, 19.2, 4],
    [{ duration: 8, quality: '1080p', generate_audio: false }, 16, 8],
    [{ duration: 8, quality: '4k', n: 4 }, 192, 8],
    [{ duration: 6, quality: '720p', generate_audio: true }, 14.4, 6],
    [{ generation_type: 'REFERENCE', image_urls: ['https://example.com/a.png'] }, 19.2, 8]
  ]
  for (const [extra, credits, videoDuration] of cases) {
    const res = await create(simulator, { model: 'veo-3.1-fast-generate-preview', prompt: 'x', ...extra })
    t.equal(res.statusCode, 200, JSON.stringify(extra))
    const body = res.json()
    t.strictSame(body.usage, { billing_rule: 'per_call', credits_reserved: credits, user_group: 'default' }, JSON.stringify(extra))
    t.strictSame(body.task_info, { can_cancel: true, estimated_time: 91, video_duration: videoDuration })
  }
})

t.test('serves the sibling model and any configured model', async (t) => {
  const simulator = await build(t, { models: ['veo-3.1-generate-preview', 'my-model'] })
  for (const model of ['veo-3.1-generate-preview', 'my-model']) {
    const res = await create(simulator, { model, prompt: 'x' })
    t.equal(res.statusCode, 200)
    t.equal(res.json().model, model)
  }
  const fast = await create(simulator, { model: 'veo-3.1-fast-generate-preview', prompt: 'x' })
  t.equal(fast.statusCode, 400)
  t.same(fast.json(), invalid('Invalid parameter model: unsupported model veo-3.1-fast-generate-preview', 'model'))
})

t.test('denied models get 403 model_access_denied', async (t) => {
  const simulator = await build(t, { deniedModels: ['veo-3.1-generate-preview'] })
  const res = await create(simulator, { model: 'veo-3.1-generate-preview', prompt: 'x' })
  t.equal(res.statusCode, 403)
  t.same(res.json(), { error: { code: 'model_access_denied', message: 'Token does not have access to model: veo-3.1-generate-preview', type: 'invalid_request_error' } })
})

t.test('body validation names the field in message and param', async (t) => {
  const simulator = await build(t)
  const base = { model: 'veo-3.1-fast-generate-preview', prompt: 'x' }
  const cases: Array<[unknown, ReturnType<typeof invalid>]> = [
    [{ model: 'veo-3.1-fast-generate-preview' }, invalid('Missing required parameter: prompt', 'prompt')],
    [{ prompt: 'x' }, invalid('Missing required parameter: model', 'model')],
    [{ ...base, durations: 8 }, invalid('Unknown parameter: durations', 'durations')],
    [{ ...base, duration: 5 }, invalid('Invalid parameter duration: must be one of 4, 6, 8', 'duration')],
    [{ ...base, quality: '8k' }, invalid('Invalid parameter quality: must be one of 720p, 1080p, 4k', 'quality')],
    [{ ...base, aspect_ratio: '4:3' }, invalid('Invalid parameter aspect_ratio: must be one of auto, 16:9, 9:16', 'aspect_ratio')],
    [{ ...base, n: 5 }, invalid('Invalid parameter n: must be <= 4', 'n')],
    [{ ...base, n: 1.5 }, invalid('Invalid parameter n: must be integer', 'n')],
    [{ ...base, prompt: '' }, invalid('Invalid parameter prompt: must not have fewer than 1 characters', 'prompt')],
    [{ ...base, prompt: 'x'.repeat(2001) }, invalid('Invalid parameter prompt: must not have more than 2000 characters', 'prompt')],
    [{ ...base, model: 42 }, invalid('Invalid parameter model: must be string', 'model')],
    [{ ...base, generate_audio: 'yes' }, invalid('Invalid parameter generate_audio: must be boolean', 'generate_audio')],
    [{ ...base, image_urls: ['not a url'] }, invalid('Invalid parameter image_urls[0]: must match format "uri"', 'image_urls')],
    [{ ...base, image_urls: ['https://e.com/1.png', 'https://e.com/2.png', 'https://e.com/3.png', 'https://e.com/4.png'] }, invalid('Invalid parameter image_urls: must not have more than 3 items', 'image_urls')],
    [{ ...base, generation_type: 'FIRST&LAST' }, invalid('Invalid parameter image_urls: generation_type FIRST&LAST requires 1 to 2 images', 'image_urls')],
    [{ ...base, generation_type: 'REFERENCE' }, invalid('Invalid parameter image_urls: generation_type REFERENCE requires 1 to 3 images', 'image_urls')],
    [{ ...base, image_urls: ['https://e.com/1.png', 'https://e.com/2.png', 'https://e.com/3.png'] }, invalid('Invalid parameter image_urls: more than 2 images require generation_type REFERENCE', 'image_urls')],
    [{ ...base, callback_url: 'http://example.com/hook' }, invalid('Invalid parameter callback_url: must use HTTPS', 'callback_url')],
    [{ ...base, callback_url: 'https://192.168.1.10/hook' }, invalid('Invalid parameter callback_url: must not point to a private or loopback address', 'callback_url')],
    [{ ...base, callback_url: 'https://127.0.0.1:8443/hook' }, invalid('Invalid parameter callback_url: must not point to a private or loopback address', 'callback_url')],
    [{ ...base, callback_url: `https://example.com/${'a'.repeat(2048)}` }, invalid('Invalid parameter callback_url: must be at most 2048 characters', 'callback_url')],
    [{ model: 'veo-3.1-pro', prompt: 'x' }, invalid('Invalid parameter model: unsupported model veo-3.1-pro', 'model')],
    [[base], invalid('Request body must be a JSON object')]
  ]
  for (const [body, expected] of cases) {
    const res = await create(simulator, body)
    t.equal(res.statusCode, 400, JSON.stringify(body).slice(0, 120))
    t.strictSame(res.json(), expected, JSON.stringify(body).slice(0, 120))
  }
  t.equal(simulator.tasks.size, 0, 'no task was created')

  const ok = await create(simulator, {
    ...base,
    image_urls: ['https://e.com/1.png', 'https://e.com/2.png'],
    generation_type: 'FIRST&LAST',
    aspect_ratio: 'auto',
    generate_audio: false,
    duration: 6,
    n: 4,
    quality: '4k',
    seed: 4294967295,
    negative_prompt: 'blurry',
    person_generation: 'dont_allow',
    resize_mode: 'crop',
    callback_url: 'https://hooks.example.com/evolink'
  })
  t.equal(ok.statusCode, 200, 'every documented field accepted')
})

t.test('malformed, empty or non-JSON bodies are 400 invalid_request', async (t) => {
  const simulator = await build(t)
  const bad = await simulator.app.inject({ method: 'POST', url: '/v1/videos/generations', headers: { ...AUTH, 'content-type': 'application/json' }, payload: '{"model":' })
  t.equal(bad.statusCode, 400)
  t.strictSame(bad.json(), invalid('Invalid JSON body'))
  const empty = await simulator.app.inject({ method: 'POST', url: '/v1/videos/generations', headers: { ...AUTH, 'content-type': 'application/json' }, payload: '' })
  t.equal(empty.statusCode, 400)
  t.strictSame(empty.json(), invalid('Invalid JSON body'))
  const none = await simulator.app.inject({ method: 'POST', url: '/v1/videos/generations', headers: AUTH })
  t.equal(none.statusCode, 400)
  t.strictSame(none.json(), invalid('Request body must be a JSON object'))
  const xml = await simulator.app.inject({ method: 'POST', url: '/v1/videos/generations', headers: { ...AUTH, 'content-type': 'application/xml' }, payload: '<a/>' })
  t.equal(xml.statusCode, 415)
  t.strictSame(xml.json(), invalid('Content-Type must be application/json'))
  const huge = await simulator.app.inject({ method: 'POST', url: '/v1/videos/generations', headers: { ...AUTH, 'content-type': 'application/json' }, payload: JSON.stringify({ prompt: 'x'.repeat(2 * 1024 * 1024) }) })
  t.equal(huge.statusCode, 413)
  t.strictSame(huge.json(), { error: { code: 'request_too_large', message: 'Request entity too large', type: 'invalid_request_error' } })
})

t.test('unknown routes get an upstream-style 404', async (t) => {
  const simulator = await build(t)
  const res = await simulator.app.inject({ method: 'GET', url: '/v2/whatever?x=1', headers: AUTH })
  t.equal(res.statusCode, 404)
  t.strictSame(res.json(), { error: { code: 'not_found', message: 'Unknown route: GET /v2/whatever', type: 'invalid_request_error' } })
})

t.test('rejects bad options', async (t) => {
  await t.rejects(buildSimulator({ apiKey: '' }), /apiKey is required/)
  await t.rejects(buildSimulator({ apiKey: 'k', taskDurationMs: -1 }), /taskDurationMs/)
})

t.test('calls are counted and logged with the Authorization header and body', async (t) => {
  const simulator = await build(t)
  await create(simulator, { model: 'veo-3.1-fast-generate-preview', prompt: 'x' })
  await create(simulator, { model: 'veo-3.1-fast-generate-preview', prompt: 'y' }, { authorization: 'Bearer other' })
  await simulator.app.inject({ method: 'GET', url: '/v1/tasks/task-unified-1-abcdefgh?x=1', headers: AUTH })
  t.equal(simulator.calls.create, 2)
  t.equal(simulator.calls.task, 1)
  t.equal(simulator.calls.file, 0)
  t.match(simulator.calls.log, [
    { at: T0, route: 'create', method: 'POST', path: '/v1/videos/generations', authorization: `Bearer ${KEY}`, body: { model: 'veo-3.1-fast-generate-preview', prompt: 'x' } },
    { route: 'create', authorization: 'Bearer other', body: undefined },
    { route: 'task', method: 'GET', path: '/v1/tasks/task-unified-1-abcdefgh?x=1', authorization: `Bearer ${KEY}` }
  ])
  t.equal(simulator.calls.log[0]?.headers['content-type'], 'application/json')
  simulator.reset()
  t.strictSame({ ...simulator.calls, log: [...simulator.calls.log] }, { create: 0, task: 0, file: 0, upload: 0, log: [] })
  t.equal(simulator.tasks.size, 0)
})
