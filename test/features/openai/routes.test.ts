import t from 'tap'
import { buildTestApp, makeTenant, validBody } from '../../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'
import { assertErrorResponse } from '../../helpers/assert-error.ts'
import { redisForTests } from '../../helpers/redis.ts'

const metricsToken = 'metrics-token-0123456789abcdef'

/** The dialect's mapping and refusals, answer by answer (app.inject against a real simulator). */
t.test('POST /v1/videos: the mapping and its refusals', async (t) => {
  const upstream = await startTestSimulator(t, { taskDurationMs: 60_000 })
  const acme = makeTenant('acme', { rateLimit: { max: 500, timeWindow: 60_000 } })
  const app = await buildTestApp(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [acme], config: { openaiModelAliases: 'sora-2=veo-3.1-generate-preview,my-alias=veo-3.1-fast-generate-preview', imageUploadMaxBytes: 4096 } })
  const create = async (payload: unknown) => await app.inject({ method: 'POST', url: '/v1/videos', headers: { authorization: acme.authorization }, payload: payload as Record<string, unknown> })

  t.test('fields map onto the native create that the upstream receives', async (t) => {
    const before = upstream.simulator.calls.create
    const answer = await create({ model: 'sora-2', prompt: 'A fox', seconds: '6', size: '1080x1920', input_reference: { image_url: 'https://example.com/a.png' } })
    t.equal(answer.statusCode, 200)
    const video = answer.json()
    t.match(video, { object: 'video', model: 'sora-2', prompt: 'A fox', seconds: '6', size: '1080x1920', status: 'queued', progress: 0, created_at: Number, completed_at: null, expires_at: null, error: null, remixed_from_video_id: null })
    t.same(Object.keys(video).sort(), ['completed_at', 'created_at', 'error', 'expires_at', 'id', 'model', 'object', 'progress', 'prompt', 'remixed_from_video_id', 'seconds', 'size', 'status'])
    t.equal(upstream.simulator.calls.create - before, 1)
    const native = await app.inject({ method: 'GET', url: `/v1/tasks/${video.id}`, headers: { authorization: acme.authorization } })
    t.equal(native.json().model, 'veo-3.1-generate-preview', 'the alias named the served model')
  })

  t.test('defaults: sora-2, 4 seconds, 720x1280', async (t) => {
    const video = (await create({ prompt: 'defaults' })).json()
    t.match(video, { model: 'sora-2', seconds: '4', size: '720x1280' })
  })

  t.test('a served model id is accepted as itself', async (t) => {
    t.equal((await create({ model: 'veo-3.1-fast-generate-preview', prompt: 'x' })).json().model, 'veo-3.1-fast-generate-preview')
  })

  const refusals: Array<[string, unknown, { status: number, code: string, type: string, message: string | RegExp, param?: string }]> = [
    ['an unknown model', { model: 'sora-3', prompt: 'x' }, { status: 400, code: 'invalid_request', type: 'invalid_request_error', param: 'model', message: 'Model "sora-3" is not served by this gateway; use one of: sora-2, my-alias, veo-3.1-fast-generate-preview, veo-3.1-generate-preview.' }],
    ['12 seconds', { prompt: 'x', seconds: '12' }, { status: 400, code: 'invalid_request', type: 'invalid_request_error', param: 'seconds', message: '"seconds" must be one of "4", "6", "8"; got "12".' }],
    ['seconds as a number', { prompt: 'x', seconds: 4 }, { status: 400, code: 'invalid_request', type: 'invalid_request_error', param: 'seconds', message: /seconds/ }],
    ['a Sora size', { prompt: 'x', size: '1792x1024' }, { status: 400, code: 'invalid_request', type: 'invalid_request_error', param: 'size', message: '"size" must be one of 1280x720, 720x1280, 1920x1080, 1080x1920, 3840x2160, 2160x3840; got "1792x1024".' }],
    ['no prompt', { model: 'sora-2' }, { status: 400, code: 'invalid_request', type: 'invalid_request_error', param: 'prompt', message: /prompt/ }],
    ['an unknown field', { prompt: 'x', duration: 4 }, { status: 400, code: 'invalid_request', type: 'invalid_request_error', param: 'duration', message: /duration/ }],
    ['an input_reference that is no URL', { prompt: 'x', input_reference: { image_url: 'not a url' } }, { status: 400, code: 'invalid_request', type: 'invalid_request_error', param: 'input_reference.image_url', message: /image_url/ }]
  ]
  for (const [name, payload, expected] of refusals) {
    t.test(name, async (t) => {
      const before = upstream.simulator.calls.create
      assertErrorResponse(t, await create(payload), expected)
      t.equal(upstream.simulator.calls.create, before, 'nothing sent upstream')
    })
  }

  t.test('multipart: text fields, the nested input_reference, and files', async (t) => {
    const form = (parts: string[]) => ({
      payload: parts.map((part) => `--b\r\n${part}\r\n`).join('') + '--b--\r\n',
      headers: { authorization: acme.authorization, 'content-type': 'multipart/form-data; boundary=b' }
    })
    const field = (name: string, value: string) => `Content-Disposition: form-data; name="${name}"\r\n\r\n${value}`
    const file = (name: string, content: string) => `Content-Disposition: form-data; name="${name}"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n${content}`
    const ok = await app.inject({ method: 'POST', url: '/v1/videos', ...form([field('prompt', 'from a form'), field('seconds', '8'), field('size', '1280x720'), field('input_reference[image_url]', 'https://example.com/a.png')]) })
    t.equal(ok.statusCode, 200)
    t.match(ok.json(), { prompt: 'from a form', seconds: '8', size: '1280x720', model: 'sora-2' })
    const before = { create: upstream.simulator.calls.create, upload: upstream.simulator.calls.upload }
    assertErrorResponse(t, await app.inject({ method: 'POST', url: '/v1/videos', ...form([field('prompt', 'x'), file('input_reference', 'PNGDATA')]) }), {
      status: 400,
      code: 'invalid_request',
      type: 'invalid_request_error',
      param: 'input_reference',
      message: 'The uploaded input_reference is not a JPEG, PNG or WebP image.'
    })
    assertErrorResponse(t, await app.inject({ method: 'POST', url: '/v1/videos', ...form([field('prompt', 'x'), file('image', 'PNGDATA')]) }), {
      status: 400,
      code: 'invalid_request',
      type: 'invalid_request_error',
      param: 'image',
      message: 'A file is accepted only as "input_reference"; got one as "image".'
    })
    assertErrorResponse(t, await app.inject({ method: 'POST', url: '/v1/videos', ...form([field('prompt', 'x'), field('input_reference[image_url]', 'https://example.com/a.png'), file('input_reference', 'PNGDATA')]) }), {
      status: 400,
      code: 'invalid_request',
      type: 'invalid_request_error',
      param: 'input_reference',
      message: 'Send "input_reference" once: a file or input_reference[image_url], not both.'
    })
    // The fields are judged before the file is looked at or hosted.
    assertErrorResponse(t, await app.inject({ method: 'POST', url: '/v1/videos', ...form([field('prompt', 'x'), field('seconds', '12'), file('input_reference', 'PNGDATA')]) }), {
      status: 400, code: 'invalid_request', type: 'invalid_request_error', param: 'seconds', message: '"seconds" must be one of "4", "6", "8"; got "12".'
    })
    const big = await app.inject({ method: 'POST', url: '/v1/videos', ...form([field('prompt', 'x'), file('input_reference', 'x'.repeat(70_000))]) })
    assertErrorResponse(t, big, { status: 413, code: 'image_too_large', type: 'invalid_request_error', param: 'input_reference', message: 'The uploaded image is larger than 4096 bytes.' })
    t.same({ create: upstream.simulator.calls.create, upload: upstream.simulator.calls.upload }, before, 'nothing uploaded, nothing created')
  })

  t.test('the native create stays JSON-only', async (t) => {
    const answer = await app.inject({ method: 'POST', url: '/v1/videos/generations', headers: { authorization: acme.authorization, 'content-type': 'multipart/form-data; boundary=b' }, payload: '--b--\r\n' })
    assertErrorResponse(t, answer, { status: 415, code: 'unsupported_media_type', type: 'invalid_request_error', message: 'Unsupported Content-Type; send `application/json`.' })
  })
})

t.test('reads, the index and the refused operations', async (t) => {
  const upstream = await startTestSimulator(t, { taskDurationMs: 60_000 })
  const acme = makeTenant('acme', { rateLimit: { max: 500, timeWindow: 60_000 } })
  const globex = makeTenant('globex')
  const app = await buildTestApp(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [acme, globex], config: { taskStatusTtlMs: 750, metricsToken } })
  const call = async (method: 'GET' | 'POST' | 'DELETE', url: string, tenant = acme, payload?: unknown) =>
    await app.inject({ method, url, headers: { authorization: tenant.authorization }, ...(payload === undefined ? {} : { payload: payload as Record<string, unknown> }) })

  const native = (await call('POST', '/v1/videos/generations', acme, { ...validBody, duration: 6, quality: '1080p', aspect_ratio: '16:9' })).json()

  t.test('a native create is a video too', async (t) => {
    const answer = await call('GET', `/v1/videos/${native.id}`)
    t.equal(answer.statusCode, 200)
    t.equal(answer.headers['openai-poll-after-ms'], '750', 'from the status cache interval')
    t.match(answer.json(), { id: native.id, object: 'video', model: validBody.model, prompt: validBody.prompt, seconds: '6', size: '1920x1080', status: 'queued' })
    const listed = (await call('GET', '/v1/videos')).json()
    t.same(listed.data.map((video: { id: string }) => video.id), [native.id])
    t.match(listed, { object: 'list', first_id: native.id, last_id: native.id, has_more: false })
  })

  t.test('list refusals', async (t) => {
    assertErrorResponse(t, await call('GET', '/v1/videos?after=nope'), { status: 400, code: 'invalid_request', type: 'invalid_request_error', param: 'after', message: '"after" names no video of this tenant: "nope".' })
    assertErrorResponse(t, await call('GET', '/v1/videos?limit=101'), { status: 400, code: 'invalid_request', type: 'invalid_request_error', param: 'limit', message: /limit/ })
    assertErrorResponse(t, await call('GET', '/v1/videos?order=sideways'), { status: 400, code: 'invalid_request', type: 'invalid_request_error', param: 'order', message: /order/ })
  })

  t.test('content: variants and a video not finished', async (t) => {
    assertErrorResponse(t, await call('GET', `/v1/videos/${native.id}/content?variant=thumbnail`), { status: 400, code: 'unsupported_variant', type: 'invalid_request_error', param: 'variant', message: 'Variant "thumbnail" is not supported by this gateway; supported: video.' })
    assertErrorResponse(t, await call('GET', `/v1/videos/${native.id}/content?variant=spritesheet`), { status: 400, code: 'unsupported_variant', type: 'invalid_request_error', param: 'variant', message: 'Variant "spritesheet" is not supported by this gateway; supported: video.' })
    assertErrorResponse(t, await call('GET', `/v1/videos/${native.id}/content?variant=gif`), { status: 400, code: 'invalid_request', type: 'invalid_request_error', param: 'variant', message: '"variant" must be one of video, thumbnail, spritesheet; got "gif".' })
    assertErrorResponse(t, await call('GET', `/v1/videos/${native.id}/content`), { status: 409, code: 'video_not_ready', type: 'invalid_request_error', message: `Video ${native.id} is pending; its content is available once it is completed.` })
  })

  t.test('another tenant: 404 everywhere, in OpenAI\'s shape', async (t) => {
    const notFound = { status: 404, code: 'not_found', type: 'invalid_request_error', param: 'video_id', message: `Video "${native.id}" not found.` }
    assertErrorResponse(t, await call('GET', `/v1/videos/${native.id}`, globex), notFound)
    assertErrorResponse(t, await call('GET', `/v1/videos/${native.id}/content`, globex), notFound)
    assertErrorResponse(t, await call('DELETE', `/v1/videos/${native.id}`, globex), notFound)
    t.same((await call('GET', '/v1/videos', globex)).json().data, [])
  })

  t.test('remix, edits, extensions, characters: 400 naming what is supported', async (t) => {
    const supported = 'is not supported by this gateway; supported: POST /v1/videos, GET /v1/videos, GET /v1/videos/{video_id}, GET /v1/videos/{video_id}/content, DELETE /v1/videos/{video_id}.'
    for (const [url, name] of [
      [`/v1/videos/${native.id}/remix`, 'Remixing a video (POST /v1/videos/{video_id}/remix)'],
      ['/v1/videos/edits', 'Editing a video (POST /v1/videos/edits)'],
      ['/v1/videos/extensions', 'Extending a video (POST /v1/videos/extensions)'],
      ['/v1/videos/characters', 'Video characters (POST /v1/videos/characters)']
    ] as const) {
      assertErrorResponse(t, await call('POST', url, acme, { prompt: 'x' }), { status: 400, code: 'unsupported_video_operation', type: 'invalid_request_error', message: `${name} ${supported}` })
    }
  })

  t.test('delete: idempotent, hides the video on this dialect, tells the removal listeners', async (t) => {
    const heard: unknown[] = []
    app.taskIndex.onRemoved((removed) => { heard.push(removed) })
    const first = await call('DELETE', `/v1/videos/${native.id}`)
    t.same(first.json(), { id: native.id, object: 'video.deleted', deleted: true })
    t.same((await call('DELETE', `/v1/videos/${native.id}`)).json(), { id: native.id, object: 'video.deleted', deleted: true })
    t.equal(heard.length, 2)
    t.match(heard[0], { tenantId: acme.id, taskId: native.id, upstreamTaskId: /^task-unified-/ })
    assertErrorResponse(t, await call('GET', `/v1/videos/${native.id}`), { status: 404, code: 'not_found', type: 'invalid_request_error', param: 'video_id', message: `Video "${native.id}" not found.` })
    t.equal((await call('GET', `/v1/tasks/${native.id}`)).statusCode, 200, 'the native task read is unchanged')
  })

  t.test('metrics count the dialect\'s requests under the same tenant', async (t) => {
    const text = (await app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${metricsToken}` } })).body
    t.match(text, new RegExp(`^vg_dialect_requests_total\\{dialect="openai",status="200",tenant="${acme.id}"\\} \\d+$`, 'm'))
    t.match(text, new RegExp(`^vg_dialect_requests_total\\{dialect="openai",status="404",tenant="${globex.id}"\\} 3$`, 'm'))
    t.notMatch(text, /vg_dialect_requests_total\{dialect="native"/, 'native routes are the rest')
    t.match(text, new RegExp(`^vg_http_requests_total\\{route="/v1/videos/:video_id",method="GET",status="200",tenant="${acme.id}"\\} \\d+$`, 'm'))
  })

  t.test('no key: 401 in the one format', async (t) => {
    const answer = await app.inject({ method: 'GET', url: '/v1/videos' })
    assertErrorResponse(t, answer, { status: 401, code: 'unauthorized', type: 'authentication_error', message: 'Missing or invalid API key. Send `Authorization: Bearer <tenant key>`.' })
  })
})

const redis = await redisForTests()
t.test('with Redis: the index is shared by instances', { skip: 'skip' in redis ? redis.skip : false }, async (t) => {
  if ('skip' in redis) return
  const upstream = await startTestSimulator(t, { taskDurationMs: 60_000 })
  const acme = makeTenant('acme', { rateLimit: { max: 500, timeWindow: 60_000 } })
  const config = { redisUrl: redis.url, redisKeyPrefix: `test-openai-${process.pid}-${Date.now()}:` }
  const one = await buildTestApp(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [acme], config })
  const two = await buildTestApp(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [acme], config })
  const headers = { authorization: acme.authorization }
  const created = (await one.inject({ method: 'POST', url: '/v1/videos', headers, payload: { prompt: 'shared' } })).json()
  const listed = (await two.inject({ method: 'GET', url: '/v1/videos', headers })).json()
  t.same(listed.data.map((video: { id: string }) => video.id), [created.id])
  t.equal((await two.inject({ method: 'DELETE', url: `/v1/videos/${created.id}`, headers })).statusCode, 200)
  t.equal((await one.inject({ method: 'GET', url: `/v1/videos/${created.id}`, headers })).statusCode, 404)
})
