import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import OpenAI, { toFile } from 'openai'
import { request } from 'undici'
import { makeTenant, startTestGateway } from '../../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'
import { sampleVideo } from '../../../src/simulator/media.ts'

/** A real 1×1 PNG. */
const png = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==', 'base64')

/**
 * The OpenAI Videos dialect as an application written for Sora uses it: the
 * official `openai` SDK, unmodified (baseURL and apiKey only), against a
 * listening gateway and a listening simulator.
 */
t.test('the official openai SDK against the gateway', async (t) => {
  const upstream = await startTestSimulator(t, { taskDurationMs: 300 })
  const acme = makeTenant('acme', { rateLimit: { max: 500, timeWindow: 60_000 }, readRateLimit: { max: 5000, timeWindow: 60_000 } })
  const globex = makeTenant('globex', { rateLimit: { max: 500, timeWindow: 60_000 }, readRateLimit: { max: 5000, timeWindow: 60_000 } })
  const limited = makeTenant('limited', { allowedModels: ['veo-3.1-generate-preview'] })
  const { url } = await startTestGateway(t, {
    upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [acme, globex, limited], config: { taskStatusTtlMs: 50, archiveAllowedSources: '127.0.0.0/8' }
  })
  const client = (tenant = acme, options: { maxRetries?: number } = {}): OpenAI => new OpenAI({ baseURL: `${url}/v1`, apiKey: tenant.key, ...options })
  const openai = client()

  const waitForCompletion = async (id: string, sdk = openai) => {
    let video = await sdk.videos.retrieve(id)
    for (let attempt = 0; attempt < 100 && (video.status === 'queued' || video.status === 'in_progress'); attempt++) {
      video = await sdk.videos.retrieve(id, { query: { wait: '1' } } as never)
    }
    return video
  }

  const created = await openai.videos.create({ model: 'sora-2', prompt: 'A cat playing piano', seconds: '8', size: '1280x720' })
  t.match(created, { object: 'video', status: 'queued', model: 'sora-2', prompt: 'A cat playing piano', seconds: '8', size: '1280x720', error: null, remixed_from_video_id: null, completed_at: null })
  t.equal(upstream.simulator.tasks.get(acme.id) === undefined, true, 'no upstream id in tenant space')

  t.test('the SDK sent a form; the upstream got the mapped native create', async (t) => {
    const native = await request(`${url}/v1/tasks/${created.id}`, { headers: { authorization: acme.authorization } })
    t.equal(native.statusCode, 200, 'one id, readable on both dialects')
    const task = await native.body.json() as { id: string, model: string }
    t.equal(task.id, created.id)
    t.equal(task.model, 'veo-3.1-fast-generate-preview')
  })

  t.test('retrieve until completed, then the content bytes are the simulator\'s MP4', async (t) => {
    const video = await waitForCompletion(created.id)
    t.match(video, { id: created.id, status: 'completed', progress: 100, completed_at: Number, expires_at: Number })
    const content = await openai.videos.downloadContent(created.id)
    t.equal(content.headers.get('content-type'), 'video/mp4')
    t.same(Buffer.from(await content.arrayBuffer()), sampleVideo)
  })

  t.test('an archived video: a Range read through the SDK is 206 with the exact slice', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'vg-openai-range-'))
    const { url: archivingUrl } = await startTestGateway(t, {
      upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [acme], config: { archiveDir: dir, archiveAllowedSources: '127.0.0.0/8', archivePollIntervalMs: 20, taskStatusTtlMs: 50 }
    })
    // Teardowns run in order: the gateway closes first, then its archive directory goes (the other way round, its close took a minute).
    t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
    const sdk = new OpenAI({ baseURL: `${archivingUrl}/v1`, apiKey: acme.key })
    const video = await sdk.videos.create({ prompt: 'to be archived' })
    t.equal((await waitForCompletion(video.id, sdk)).status, 'completed')
    // The native read says when the archive has the file (the read is also what queues the archive job).
    let archive: { status?: string } | undefined
    for (let attempt = 0; attempt < 200 && archive?.status !== 'archived'; attempt++) {
      archive = (await sdk.get(`/tasks/${video.id}`) as { archive?: { status: string } }).archive
      if (archive?.status !== 'archived') await sleep(20)
    }
    t.equal(archive?.status, 'archived')
    const part = await sdk.videos.downloadContent(video.id, {}, { headers: { Range: 'bytes=10-19' } })
    t.equal(part.status, 206)
    t.equal(part.headers.get('content-range'), `bytes 10-19/${sampleVideo.length}`)
    t.same(Buffer.from(await part.arrayBuffer()), sampleVideo.subarray(10, 20))
    const tail = await sdk.get(`/videos/${video.id}/content`, { headers: { range: 'bytes=-7' }, __binaryResponse: true } as never) as Response
    t.equal(tail.status, 206)
    t.same(Buffer.from(await tail.arrayBuffer()), sampleVideo.subarray(-7))
    const whole = await sdk.videos.downloadContent(video.id)
    t.equal(whole.status, 200)
    t.same(Buffer.from(await whole.arrayBuffer()), sampleVideo)
  })

  t.test('a JSON create (input_reference by URL) goes the same way', async (t) => {
    const answer = await openai.post('/videos', { body: { model: 'sora-2-pro', prompt: 'A sunrise', input_reference: { image_url: 'https://example.com/first.png' } } }) as OpenAI.Videos.Video
    t.match(answer, { object: 'video', status: 'queued', model: 'sora-2-pro', seconds: '4', size: '720x1280' })
  })

  t.test('an uploaded input_reference (toFile) is hosted on the files API; the upstream gets a link it can fetch', async (t) => {
    const before = { create: upstream.simulator.calls.create, upload: upstream.simulator.calls.upload }
    const video = await openai.videos.create({ model: 'sora-2', prompt: 'From this frame', size: '1280x720', input_reference: await toFile(png, 'caller-name.png', { type: 'image/png' }) })
    t.match(video, { object: 'video', status: 'queued', model: 'sora-2', prompt: 'From this frame', size: '1280x720' })
    t.equal(upstream.simulator.calls.upload - before.upload, 1, 'one upload')
    t.equal(upstream.simulator.calls.create - before.create, 1, 'one create')
    const upload = upstream.simulator.calls.log.findLast((call) => call.route === 'upload')
    t.equal(upload?.authorization, `Bearer ${TEST_UPSTREAM_KEY}`, 'the files API gets the upstream key')
    const create = upstream.simulator.calls.log.findLast((call) => call.route === 'create')
    const imageUrls = (create?.body as { image_urls?: string[] }).image_urls ?? []
    t.equal(imageUrls.length, 1)
    t.match(imageUrls[0], new RegExp(`^${upstream.url}/uploads/file_[\\w-]+/input-reference\\.png$`))
    const fetched = await request(imageUrls[0]!)
    t.equal(fetched.statusCode, 200, 'the upstream can fetch it, without a key')
    t.equal(fetched.headers['content-type'], 'image/png')
    t.same(Buffer.from(await fetched.body.arrayBuffer()), png, 'the bytes the caller sent')
    t.match(upstream.simulator.uploads.list().at(-1), { name: 'input-reference.png', mimeType: 'image/png' })
  })

  t.test('an uploaded Blob (a WebP) goes the same way', async (t) => {
    const webp = Buffer.concat([Buffer.from('RIFF'), Buffer.from([0x1a, 0, 0, 0]), Buffer.from('WEBPVP8 '), Buffer.alloc(14)])
    const video = await openai.videos.create({ prompt: 'A blob', input_reference: new File([webp], 'frame.webp', { type: 'image/webp' }) })
    t.equal(video.status, 'queued')
    const create = upstream.simulator.calls.log.findLast((call) => call.route === 'create')
    t.match((create?.body as { image_urls: string[] }).image_urls[0], /\/input-reference\.webp$/)
  })

  t.test('Idempotency-Key with an upload: the same file replays, another file is another request', async (t) => {
    const before = { create: upstream.simulator.calls.create, upload: upstream.simulator.calls.upload }
    // The SDK sends no Idempotency-Key of its own for OpenAI (no idempotency header configured): the caller's, as a header.
    const send = async (bytes: Buffer) => await openai.videos.create({ prompt: 'keyed', input_reference: await toFile(bytes, 'a.png') }, { headers: { 'Idempotency-Key': 'upload-key-1' } })
    const first = await send(png)
    const again = await send(png)
    t.equal(again.id, first.id, 'replayed')
    t.same({ create: upstream.simulator.calls.create - before.create, upload: upstream.simulator.calls.upload - before.upload }, { create: 1, upload: 1 })
    const other = await send(Buffer.concat([png, Buffer.from('trailing bytes')])).catch((error: unknown) => error)
    t.ok(other instanceof OpenAI.UnprocessableEntityError)
    t.match(other, { status: 422, code: 'idempotency_key_reused', param: 'Idempotency-Key' })
  })

  t.test('a file that is no image: BadRequestError with param, nothing uploaded or created', async (t) => {
    const before = { create: upstream.simulator.calls.create, upload: upstream.simulator.calls.upload }
    const error = await openai.videos.create({ model: 'sora-2', prompt: 'x', input_reference: await toFile(Buffer.from('not really a png'), 'first.png', { type: 'image/png' }) }).catch((error: unknown) => error)
    t.ok(error instanceof OpenAI.BadRequestError)
    t.match(error, { status: 400, param: 'input_reference', code: 'invalid_request', type: 'invalid_request_error', message: 'The uploaded input_reference is not a JPEG, PNG or WebP image.' })
    t.same({ create: upstream.simulator.calls.create, upload: upstream.simulator.calls.upload }, before)
  })

  t.test('an image over IMAGE_UPLOAD_MAX_BYTES: 413 image_too_large, nothing uploaded', async (t) => {
    const { url: smallUrl } = await startTestGateway(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [acme], config: { imageUploadMaxBytes: 2048 } })
    const sdk = new OpenAI({ baseURL: `${smallUrl}/v1`, apiKey: acme.key, maxRetries: 0 })
    const before = upstream.simulator.calls.upload
    const big = Buffer.concat([png, Buffer.alloc(5000)])
    const error = await sdk.videos.create({ prompt: 'x', input_reference: await toFile(big, 'big.png', { type: 'image/png' }) }).catch((error: unknown) => error)
    t.ok(error instanceof OpenAI.APIError)
    t.match(error, { status: 413, param: 'input_reference', code: 'image_too_large', type: 'invalid_request_error', message: 'The uploaded image is larger than 2048 bytes.' })
    t.equal(upstream.simulator.calls.upload, before)
    t.equal((await sdk.videos.create({ prompt: 'x', input_reference: await toFile(png, 'small.png') })).status, 'queued', 'under the limit it works')
  })

  t.test('where uploads cannot be hosted (EVOLINK_FILES_URL=off): 400 saying so', async (t) => {
    const { url: offUrl } = await startTestGateway(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [acme], config: { evolinkFilesUrl: 'off' } })
    const sdk = new OpenAI({ baseURL: `${offUrl}/v1`, apiKey: acme.key })
    const before = { create: upstream.simulator.calls.create, upload: upstream.simulator.calls.upload }
    const error = await sdk.videos.create({ prompt: 'x', input_reference: await toFile(png, 'first.png', { type: 'image/png' }) }).catch((error: unknown) => error)
    t.ok(error instanceof OpenAI.BadRequestError)
    t.match(error, {
      status: 400,
      param: 'input_reference',
      code: 'invalid_request',
      message: 'File uploads are not enabled on this gateway (EVOLINK_FILES_URL=off); send input_reference as { "image_url": "https://…" } (in a form: input_reference[image_url]).'
    })
    t.same({ create: upstream.simulator.calls.create, upload: upstream.simulator.calls.upload }, before)
  })

  t.test('the files API failing: the SDK gets the gateway\'s 502, no task', async (t) => {
    const before = upstream.simulator.calls.create
    upstream.simulator.faults.push({ route: 'upload', status: 500 })
    const error = await client(acme, { maxRetries: 0 }).videos.create({ prompt: 'x', input_reference: await toFile(png, 'first.png') }).catch((error: unknown) => error)
    t.ok(error instanceof OpenAI.InternalServerError)
    t.match(error, { status: 502, code: 'upstream_error', message: 'The video provider failed (status 500).' })
    t.equal(upstream.simulator.calls.create, before)
  })

  t.test('list: auto-pagination walks two pages, newest first', async (t) => {
    const tenant = makeTenant('lister', { rateLimit: { max: 500, timeWindow: 60_000 }, readRateLimit: { max: 5000, timeWindow: 60_000 } })
    const { url: listerUrl } = await startTestGateway(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [tenant] })
    const sdk = new OpenAI({ baseURL: `${listerUrl}/v1`, apiKey: tenant.key })
    const ids: string[] = []
    for (let index = 0; index < 5; index++) ids.push((await sdk.videos.create({ prompt: `scene ${index}` })).id)
    const first = await sdk.videos.list({ limit: 3 })
    t.equal(first.data.length, 3)
    t.equal(first.has_more, true)
    const walked: string[] = []
    for await (const video of sdk.videos.list({ limit: 3 })) walked.push(video.id)
    t.same(walked, [...ids].reverse(), 'every video once, newest first, across two pages')
    const ascending: string[] = []
    for await (const video of sdk.videos.list({ limit: 2, order: 'asc' })) ascending.push(video.id)
    t.same(ascending, ids)
  })

  t.test('a second tenant can neither read, list, download nor delete the first\'s videos', async (t) => {
    const other = client(globex)
    t.ok(await other.videos.retrieve(created.id).catch((error: unknown) => error) instanceof OpenAI.NotFoundError)
    t.ok(await other.videos.downloadContent(created.id).catch((error: unknown) => error) instanceof OpenAI.NotFoundError)
    t.ok(await other.videos.delete(created.id).catch((error: unknown) => error) instanceof OpenAI.NotFoundError)
    const listed = await other.videos.list()
    t.same(listed.data, [])
    t.equal((await openai.videos.retrieve(created.id)).id, created.id, 'still there for its owner')
  })

  t.test('delete, then retrieve: NotFoundError; delete is idempotent', async (t) => {
    const video = await openai.videos.create({ prompt: 'to be deleted' })
    t.same(await openai.videos.delete(video.id), { id: video.id, object: 'video.deleted', deleted: true })
    t.same(await openai.videos.delete(video.id), { id: video.id, object: 'video.deleted', deleted: true })
    t.ok(await openai.videos.retrieve(video.id).catch((error: unknown) => error) instanceof OpenAI.NotFoundError)
    const listed: string[] = []
    for await (const entry of openai.videos.list()) listed.push(entry.id)
    t.notOk(listed.includes(video.id))
  })

  t.test('each error class of the SDK', async (t) => {
    const badSeconds = await openai.videos.create({ prompt: 'x', seconds: '12' as never }).catch((error: unknown) => error)
    t.ok(badSeconds instanceof OpenAI.BadRequestError)
    t.match(badSeconds, { status: 400, param: 'seconds', message: '"seconds" must be one of "4", "6", "8"; got "12".' })
    const badSize = await openai.videos.create({ prompt: 'x', size: '1792x1024' }).catch((error: unknown) => error)
    t.match(badSize, { status: 400, param: 'size' })
    t.ok(await new OpenAI({ baseURL: `${url}/v1`, apiKey: 'vgk_wrong' }).videos.list().catch((error: unknown) => error) instanceof OpenAI.AuthenticationError)
    const denied = await client(limited).videos.create({ prompt: 'x' }).catch((error: unknown) => error)
    t.ok(denied instanceof OpenAI.PermissionDeniedError)
    t.match(denied, { status: 403, param: 'model' })
    t.ok(await openai.videos.retrieve('task-unknown').catch((error: unknown) => error) instanceof OpenAI.NotFoundError)
    upstream.simulator.faults.push({ route: 'create', status: 429, headers: { 'retry-after': '0' } })
    t.ok(await client(acme, { maxRetries: 0 }).videos.create({ prompt: 'x' }).catch((error: unknown) => error) instanceof OpenAI.RateLimitError)
    upstream.simulator.faults.push({ route: 'create', status: 500 })
    t.ok(await client(acme, { maxRetries: 0 }).videos.create({ prompt: 'x' }).catch((error: unknown) => error) instanceof OpenAI.InternalServerError)
    const remix = await openai.videos.remix(created.id, { prompt: 'again' }).catch((error: unknown) => error)
    t.ok(remix instanceof OpenAI.BadRequestError)
    t.match(remix, { status: 400, code: 'unsupported_video_operation', message: /Remixing a video .* is not supported by this gateway; supported: POST \/v1\/videos/ })
    const thumbnail = await openai.videos.downloadContent(created.id, { variant: 'thumbnail' }).catch((error: unknown) => error)
    t.match(thumbnail, { status: 400, code: 'unsupported_variant', param: 'variant' })
  })

  t.test('a 429 that the SDK retries by itself, then succeeds', async (t) => {
    const before = upstream.simulator.calls.create
    upstream.simulator.faults.push({ route: 'create', status: 429, headers: { 'retry-after': '0' } })
    const video = await openai.videos.create({ prompt: 'retried' })
    t.equal(video.status, 'queued')
    t.equal(upstream.simulator.calls.create - before, 2, 'one refused, one accepted')
  })
})
