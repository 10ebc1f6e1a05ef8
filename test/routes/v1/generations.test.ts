import t from 'tap'
import { buildTestApp, makeTenant, validBody } from '../../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'
import { assertErrorResponse } from '../../helpers/assert-error.ts'

const fullBody = {
  model: 'veo-3.1-fast-generate-preview',
  prompt: 'A lighthouse in a storm',
  image_urls: ['https://example.com/a.png', 'https://example.com/b.png', 'https://example.com/c.png'],
  generation_type: 'REFERENCE',
  aspect_ratio: '16:9',
  generate_audio: false,
  duration: 8,
  n: 2,
  quality: '4k',
  seed: 4294967295,
  negative_prompt: 'blur',
  person_generation: 'dont_allow',
  resize_mode: 'crop'
}

t.test('POST /v1/videos/generations', async (t) => {
  const upstream = await startTestSimulator(t)
  const acme = makeTenant('acme')
  const narrow = makeTenant('narrow', { allowedModels: ['veo-3.1-generate-preview'] })
  const app = await buildTestApp(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [acme, narrow] })
  const create = (body: unknown, authorization = acme.authorization) => app.inject({
    method: 'POST', url: '/v1/videos/generations', headers: { authorization, 'content-type': 'application/json' }, payload: typeof body === 'string' ? body : JSON.stringify(body)
  })

  t.test('a valid body is forwarded with the gateway key, and the task comes back with a tenant-scoped id', async (t) => {
    upstream.simulator.reset()
    const response = await create(validBody)
    t.equal(response.statusCode, 200)
    const task = response.json()
    t.match(task, {
      object: 'video.generation.task',
      model: 'veo-3.1-fast-generate-preview',
      status: 'pending',
      progress: 0,
      type: 'video',
      task_info: { can_cancel: true },
      usage: { billing_rule: 'per_call', user_group: 'default' }
    })
    t.type(task.created, 'number')
    t.match(task.id, /^task-unified-\d+-[a-z0-9]{8}\.[A-Za-z0-9_-]{22}$/)
    t.equal(upstream.simulator.calls.create, 1)
    const received = upstream.simulator.calls.log.at(-1)
    t.equal(received?.authorization, `Bearer ${TEST_UPSTREAM_KEY}`, 'the upstream sees the gateway key, not the tenant key')
    t.same(received?.body, validBody, 'the body reached the upstream as sent (no defaults added)')
  })

  t.test('every field of the superset is accepted (REFERENCE, 3 images, 4k)', async (t) => {
    const response = await create(fullBody)
    t.equal(response.statusCode, 200, response.body)
  })

  t.test('the other served model shares the schema', async (t) => {
    const response = await create({ ...validBody, model: 'veo-3.1-generate-preview' })
    t.equal(response.statusCode, 200)
    t.equal(response.json().model, 'veo-3.1-generate-preview')
  })

  const invalid: Array<[string, unknown, string, RegExp]> = [
    ['unknown field', { ...validBody, durations: 4 }, 'durations', /Unknown field "durations"/],
    ['missing prompt', { model: validBody.model }, 'prompt', /Missing required field "prompt"/],
    ['missing model', { prompt: 'x' }, 'model', /Missing required field "model"/],
    ['unknown model', { ...validBody, model: 'sora-2' }, 'model', /must be one of/],
    ['duration not in enum', { ...validBody, duration: 5 }, 'duration', /"duration" must be one of: 4, 6, 8/],
    ['duration as string', { ...validBody, duration: '4' }, 'duration', /must be one of/],
    ['generate_audio as string', { ...validBody, generate_audio: 'true' }, 'generate_audio', /must be boolean/],
    ['n below range', { ...validBody, n: 0 }, 'n', /must be >= 1/],
    ['n above range', { ...validBody, n: 5 }, 'n', /must be <= 4/],
    ['n not an integer', { ...validBody, n: 1.5 }, 'n', /must be integer/],
    ['quality unknown', { ...validBody, quality: '2160p' }, 'quality', /must be one of/],
    ['seed zero', { ...validBody, seed: 0 }, 'seed', /must be >= 1/],
    ['seed too large', { ...validBody, seed: 4294967296 }, 'seed', /must be <= 4294967295/],
    ['prompt too long', { ...validBody, prompt: 'x'.repeat(2001) }, 'prompt', /must NOT have more than 2000 characters/],
    ['empty prompt', { ...validBody, prompt: '' }, 'prompt', /must NOT have fewer than 1 characters/],
    ['four images', { ...validBody, generation_type: 'REFERENCE', image_urls: ['https://a.example/1.png', 'https://a.example/2.png', 'https://a.example/3.png', 'https://a.example/4.png'] }, 'image_urls', /must NOT have more than 3 items/],
    ['image url not a uri', { ...validBody, generation_type: 'FIRST&LAST', image_urls: ['not a url'] }, 'image_urls[0]', /must match format "uri"/],
    ['nested unknown type', { ...validBody, image_urls: 'https://a.example/1.png' }, 'image_urls', /must be array/],
    ['TEXT with images', { ...validBody, generation_type: 'TEXT', image_urls: ['https://a.example/1.png'] }, 'image_urls', /TEXT takes no image_urls/],
    ['FIRST&LAST without images', { ...validBody, generation_type: 'FIRST&LAST' }, 'image_urls', /FIRST&LAST needs 1 or 2/],
    ['FIRST&LAST with 3 images', { ...validBody, generation_type: 'FIRST&LAST', image_urls: ['https://a.example/1.png', 'https://a.example/2.png', 'https://a.example/3.png'] }, 'image_urls', /at most 2/],
    ['3 images without a type', { ...validBody, image_urls: ['https://a.example/1.png', 'https://a.example/2.png', 'https://a.example/3.png'] }, 'generation_type', /need generation_type REFERENCE/],
    ['REFERENCE without images', { ...validBody, generation_type: 'REFERENCE' }, 'image_urls', /REFERENCE needs 1 to 3/],
    ['REFERENCE with 4 s', { ...validBody, generation_type: 'REFERENCE', image_urls: ['https://a.example/1.png'], duration: 4 }, 'duration', /only supports duration 8/],
    ['REFERENCE with 9:16', { ...validBody, generation_type: 'REFERENCE', image_urls: ['https://a.example/1.png'], aspect_ratio: '9:16' }, 'aspect_ratio', /only supports aspect_ratio "16:9"/],
    ['REFERENCE with auto', { ...validBody, generation_type: 'REFERENCE', image_urls: ['https://a.example/1.png'], aspect_ratio: 'auto' }, 'aspect_ratio', /only supports aspect_ratio "16:9"/],
    ['resize_mode without images', { ...validBody, resize_mode: 'pad' }, 'resize_mode', /image-to-video only/],
    ['callback_url without PUBLIC_BASE_URL', { ...validBody, callback_url: 'https://example.com/hook' }, 'callback_url', /^callback_url is not available: this gateway has no PUBLIC_BASE_URL for the provider to call back\. Poll GET \/v1\/tasks\/\{task_id\} instead\.$/]
  ]
  for (const [name, body, param, message] of invalid) {
    t.test(`400 before any upstream call: ${name}`, async (t) => {
      upstream.simulator.reset()
      const response = await create(body)
      assertErrorResponse(t, response, { status: 400, code: 'invalid_request', type: 'invalid_request_error', message, param })
      t.equal(upstream.simulator.calls.create, 0, 'no upstream call')
    })
  }

  t.test('bodies that are not a JSON object', async (t) => {
    upstream.simulator.reset()
    for (const [payload, message] of [
      ['{"model": "veo', /not valid JSON/],
      ['', /empty/],
      ['[]', /must be a JSON object/],
      ['"just a string"', /must be a JSON object/],
      ['null', /must be a JSON object/],
      ['{"__proto__": {"polluted": true}, "model": "veo-3.1-fast-generate-preview", "prompt": "x"}', /.+/],
      ['{"constructor": {"prototype": {"polluted": true}}, "model": "veo-3.1-fast-generate-preview", "prompt": "x"}', /.+/]
    ] as Array<[string, RegExp]>) {
      const response = await create(payload)
      assertErrorResponse(t, response, { status: 400, code: 'invalid_request', type: 'invalid_request_error', message })
    }
    t.equal(({} as Record<string, unknown>).polluted, undefined, 'no prototype pollution')
    t.equal(upstream.simulator.calls.create, 0)
  })

  t.test('413 over the body limit, 415 for other content types', async (t) => {
    const huge = await app.inject({
      method: 'POST',
      url: '/v1/videos/generations',
      headers: { authorization: acme.authorization, 'content-type': 'application/json' },
      payload: JSON.stringify({ ...validBody, prompt: 'x'.repeat(70_000) })
    })
    assertErrorResponse(t, huge, { status: 413, code: 'payload_too_large', type: 'invalid_request_error', message: 'Request body is larger than 65536 bytes.' })
    const text = await app.inject({
      method: 'POST', url: '/v1/videos/generations', headers: { authorization: acme.authorization, 'content-type': 'text/plain' }, payload: 'hello'
    })
    assertErrorResponse(t, text, { status: 415, code: 'unsupported_media_type', type: 'invalid_request_error', message: /application\/json/ })
  })

  t.test('a model the tenant may not use is 403 naming the field', async (t) => {
    upstream.simulator.reset()
    const response = await create(validBody, narrow.authorization)
    assertErrorResponse(t, response, { status: 403, code: 'forbidden', type: 'permission_error', message: 'Model "veo-3.1-fast-generate-preview" is not enabled for this tenant.', param: 'model' })
    t.equal(upstream.simulator.calls.create, 0)
    const allowed = await create({ ...validBody, model: 'veo-3.1-generate-preview' }, narrow.authorization)
    t.equal(allowed.statusCode, 200)
  })

  t.test('hostile strings are carried as data, not interpreted', async (t) => {
    // eslint-disable-next-line no-template-curly-in-string -- a literal ${...} is the hostile input under test
    const prompt = '"; DROP TABLE tasks; -- <script>alert(1)</script> \u0000 \u202e ${process.env.EVOLINK_API_KEY} {{7*7}} 🎬'
    const response = await create({ ...validBody, prompt })
    t.equal(response.statusCode, 200)
    t.equal((upstream.simulator.calls.log.at(-1)?.body as { prompt: string }).prompt, prompt, 'forwarded byte for byte')
  })
})
