import { createHash } from 'node:crypto'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import { request } from 'undici'
import { sampleVideo } from '../../../src/simulator/media.ts'
import type { Fault } from '../../../src/simulator/faults.ts'
import type { LookupFunction } from '../../../src/http/destination.ts'
import { assertErrorResponse } from '../../helpers/assert-error.ts'
import { logCollector, makeTenant, startTestGateway, validBody, type TestTenant } from '../../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'

const sampleSha256 = createHash('sha256').update(sampleVideo).digest('hex')

interface Harness {
  url: string
  dir: string
  /** the gateway's log lines, parsed */
  logs: Array<Record<string, unknown>>
  acme: TestTenant
  other: TestTenant
  push (fault: Fault): void
  send (tenant: TestTenant | null, method: string, path: string, headers?: Record<string, string>): Promise<{ statusCode: number, headers: Record<string, unknown>, body: string, bytes: Buffer }>
}

/** A listening gateway archiving into a fresh directory, against the real simulator (tasks finish at once). */
async function harness (t: Test, options: { acme?: Parameters<typeof makeTenant>[1], config?: Record<string, unknown>, clock?: () => number, dnsLookup?: LookupFunction } = {}): Promise<Harness> {
  const simulator = await startTestSimulator(t, { taskDurationMs: 0 })
  const dir = await mkdtemp(join(tmpdir(), 'vg-archive-flow-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const acme = makeTenant('acme', options.acme)
  const other = makeTenant('other')
  const logs = logCollector()
  const { url } = await startTestGateway(t, {
    logger: { level: 'info', stream: logs.stream },
    upstreamUrl: simulator.url,
    upstreamKey: TEST_UPSTREAM_KEY,
    tenants: [acme, other],
    config: { archiveDir: dir, archiveAllowedSources: '127.0.0.0/8', archivePollIntervalMs: 20, archiveRetryBaseDelayMs: 20, ...options.config },
    seams: { ...(options.clock === undefined ? {} : { clock: options.clock }), ...(options.dnsLookup === undefined ? {} : { dnsLookup: options.dnsLookup }) }
  })
  async function send (tenant: TestTenant | null, method: string, path: string, headers: Record<string, string> = {}): Promise<{ statusCode: number, headers: Record<string, unknown>, body: string, bytes: Buffer }> {
    const answer = await request(url + path, {
      method: method as 'GET',
      headers: { ...(tenant === null ? {} : { authorization: tenant.authorization }), ...headers, ...(method === 'POST' ? { 'content-type': 'application/json' } : {}) },
      ...(method === 'POST' ? { body: JSON.stringify(validBody) } : {})
    })
    const bytes = Buffer.from(await answer.body.arrayBuffer())
    return { statusCode: answer.statusCode, headers: answer.headers as Record<string, unknown>, body: bytes.toString('utf8'), bytes }
  }
  return { url, dir, logs: logs.lines, acme, other, push: (fault) => simulator.simulator.faults.push(fault), send }
}

/** Creates a task and reads it until its archive leaves `pending` (the read is what queues it). */
async function createAndArchive (h: Harness): Promise<{ id: string, task: Record<string, any> }> {
  const created = await h.send(h.acme, 'POST', '/v1/videos/generations')
  const id = JSON.parse(created.body).id as string
  for (let i = 0; i < 500; i++) {
    const read = await h.send(h.acme, 'GET', `/v1/tasks/${id}`)
    const task = JSON.parse(read.body)
    if (task.archive !== undefined && task.archive.status !== 'pending') return { id, task }
    await sleep(20)
  }
  throw new Error('the archive did not finish')
}

async function filesIn (dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true })
  return entries.filter((entry) => entry.isFile()).map((entry) => entry.name)
}

t.test('a read archives the task; its results become signed gateway links that serve the video', async (t) => {
  const h = await harness(t)
  const { id, task } = await createAndArchive(h)
  t.equal(task.archive.status, 'archived')
  t.match(task.archive.retain_until, Number)
  t.equal(task.upstream_results.length, 1)
  t.match(task.upstream_results[0], /\/files\/task-unified-.*-0\.mp4$/, 'the upstream link is kept')
  const link = new URL(task.results[0])
  t.equal(link.origin, h.url, 'the link is the gateway\'s')
  t.equal(link.pathname, `/v1/tasks/${id}/content`)
  t.same([...link.searchParams.keys()].sort(), ['expires', 'index', 'signature', 'tenant'])
  t.same(await filesIn(h.dir), ['0.mp4'], 'one object, no temp file')

  const video = await h.send(null, 'GET', link.pathname + link.search)
  t.equal(video.statusCode, 200, 'a signed link needs no Authorization')
  t.same(video.bytes, sampleVideo)
  t.equal(video.headers['content-type'], 'video/mp4')
  t.equal(video.headers['content-length'], String(sampleVideo.length))
  t.equal(video.headers.etag, `"${sampleSha256}"`, 'the ETag is the SHA-256 computed on the way in')
  t.equal(video.headers['accept-ranges'], 'bytes')

  const part = await h.send(h.acme, 'GET', `/v1/tasks/${id}/content`, { range: 'bytes=10-19' })
  t.equal(part.statusCode, 206)
  t.equal(part.headers['content-range'], `bytes 10-19/${sampleVideo.length}`)
  t.same(part.bytes, sampleVideo.subarray(10, 20))
  const tail = await h.send(h.acme, 'GET', `/v1/tasks/${id}/content`, { range: 'bytes=-5' })
  t.same(tail.bytes, sampleVideo.subarray(-5))
  const notModified = await h.send(h.acme, 'GET', `/v1/tasks/${id}/content`, { 'if-none-match': `"${sampleSha256}"` })
  t.equal(notModified.statusCode, 304)
  const outside = await h.send(h.acme, 'GET', `/v1/tasks/${id}/content`, { range: `bytes=${sampleVideo.length + 10}-` })
  assertErrorResponse(t, outside, { status: 416, code: 'range_not_satisfiable', type: 'invalid_request_error', message: `The Range "bytes=${sampleVideo.length + 10}-" is outside the video (${sampleVideo.length} bytes).` })
  t.equal(outside.headers['content-range'], `bytes */${sampleVideo.length}`)

  const usage = JSON.parse((await h.send(h.acme, 'GET', '/v1/usage')).body)
  t.equal(usage.total.archived_videos, 1)
  t.equal(usage.total.archived_bytes, sampleVideo.length)
})

t.test('signed links: tampered, expired and another tenant\'s are refused in the error format', async (t) => {
  const h = await harness(t)
  const { id, task } = await createAndArchive(h)
  const link = new URL(task.results[0])
  const tampered = new URL(link)
  tampered.searchParams.set('index', '1')
  assertErrorResponse(t, await h.send(null, 'GET', tampered.pathname + tampered.search), { status: 403, code: 'invalid_link', type: 'permission_error', message: 'This content link is not valid: its signature does not match.', param: 'signature' })
  const otherTenant = new URL(link)
  otherTenant.searchParams.set('tenant', h.other.id)
  assertErrorResponse(t, await h.send(null, 'GET', otherTenant.pathname + otherTenant.search), { status: 403, code: 'invalid_link', type: 'permission_error', message: 'This content link is not valid: its signature does not match.', param: 'signature' })
  const expired = new URL(link)
  expired.searchParams.set('expires', '1700000000')
  assertErrorResponse(t, await h.send(null, 'GET', expired.pathname + expired.search), { status: 403, code: 'invalid_link', type: 'permission_error', message: 'This content link is not valid: its signature does not match.', param: 'signature' })
  assertErrorResponse(t, await h.send(h.other, 'GET', `/v1/tasks/${id}/content`), { status: 404, code: 'not_found', type: 'invalid_request_error', message: 'Task not found.', param: 'task_id' })
  assertErrorResponse(t, await h.send(null, 'GET', `/v1/tasks/${id}/content`), { status: 401, code: 'unauthorized', type: 'authentication_error', message: 'Missing or invalid API key. Send `Authorization: Bearer <tenant key>`.' })
})

t.test('a link past its expiry is refused as expired', async (t) => {
  // A link lifetime of one minute, on a clock moved past it.
  let offset = 0
  const h = await harness(t, { config: { archiveLinkTtlMs: 60_000 }, clock: () => Date.now() + offset })
  const { task } = await createAndArchive(h)
  const link = new URL(task.results[0])
  const expires = Number(link.searchParams.get('expires'))
  offset = expires * 1000 - Date.now() + 1000
  assertErrorResponse(t, await h.send(null, 'GET', link.pathname + link.search), { status: 403, code: 'link_expired', type: 'permission_error', message: `This content link expired at ${new Date(expires * 1000).toISOString()}; read the task again for a fresh one.`, param: 'expires' })
})

t.test('erasure: 204, idempotent, content 410, never archived again, upstream links shown', async (t) => {
  const h = await harness(t)
  const { id } = await createAndArchive(h)
  t.equal((await h.send(h.acme, 'DELETE', `/v1/tasks/${id}/content`)).statusCode, 204)
  t.equal((await h.send(h.acme, 'DELETE', `/v1/tasks/${id}/content`)).statusCode, 204, 'idempotent')
  t.same(await filesIn(h.dir), [], 'the object is gone')
  assertErrorResponse(t, await h.send(h.acme, 'GET', `/v1/tasks/${id}/content`), { status: 410, code: 'content_deleted', type: 'invalid_request_error', message: 'The archived videos of this task were deleted (on request).' })
  const read = JSON.parse((await h.send(h.acme, 'GET', `/v1/tasks/${id}`)).body)
  t.equal(read.archive.status, 'erased')
  t.notOk('upstream_results' in read)
  t.match(read.results[0], /\/files\//, 'the upstream link again')
  await sleep(100)
  t.same(await filesIn(h.dir), [], 'a later read does not archive it again')
  assertErrorResponse(t, await h.send(h.other, 'DELETE', `/v1/tasks/${id}/content`), { status: 404, code: 'not_found', type: 'invalid_request_error', message: 'Task not found.', param: 'task_id' })
})

t.test('a tenant with archive.enabled false is not archived; content streams from the upstream link', async (t) => {
  const h = await harness(t, { acme: { archive: { enabled: false } } })
  const created = await h.send(h.acme, 'POST', '/v1/videos/generations')
  const id = JSON.parse(created.body).id as string
  const read = JSON.parse((await h.send(h.acme, 'GET', `/v1/tasks/${id}`)).body)
  t.equal(read.status, 'completed')
  t.notOk('archive' in read)
  const video = await h.send(h.acme, 'GET', `/v1/tasks/${id}/content`)
  t.equal(video.statusCode, 200)
  t.same(video.bytes, sampleVideo, 'streamed from the upstream link')
  t.same(await filesIn(h.dir), [])
})

t.test('rewriteResults false: archived, but results stay the upstream\'s', async (t) => {
  const h = await harness(t, { acme: { archive: { rewriteResults: false } } })
  const { task } = await createAndArchive(h)
  t.equal(task.archive.status, 'archived')
  t.match(task.results[0], /\/files\//)
  t.notOk('upstream_results' in task)
})

for (const { name, fault, reason } of [
  { name: 'a non-video content type', fault: { route: 'file', garbage: '<html>', contentType: 'text/html' }, reason: 'video 0: the source sent "text/html", not a video' },
  { name: 'an oversized video', fault: { route: 'file', videoBytes: 200_000 }, reason: 'video 0: the video is larger than ARCHIVE_MAX_BYTES (100000 bytes)' },
  { name: 'a redirect to a private address', fault: { route: 'file', redirect: 'http://10.1.2.3/video.mp4' }, reason: 'video 0: the result URL resolves to a private address, which the gateway does not call (after 1 redirect)' }
] as Array<{ name: string, fault: Fault, reason: string }>) {
  t.test(`${name}: the archive fails for good with a clear reason, nothing stored`, async (t) => {
    const h = await harness(t, { config: { archiveMaxBytes: 100_000 } })
    h.push({ ...fault, times: Infinity } as Fault)
    const { task } = await createAndArchive(h)
    t.same(task.archive, { status: 'failed', error: reason.replace('resolves to a private address', 'is a private address') })
    t.same(await filesIn(h.dir), [], 'no partial object')
  })
}

for (const { name, fault } of [
  { name: 'a 404', fault: { route: 'file', status: 404 } },
  { name: 'a reset', fault: { route: 'file', reset: 'before-headers' } }
] as Array<{ name: string, fault: Fault }>) {
  t.test(`${name}: retried, then archived whole`, async (t) => {
    const h = await harness(t)
    h.push({ ...fault, times: 2 } as Fault)
    const { task } = await createAndArchive(h)
    t.equal(task.archive.status, 'archived')
    const video = await h.send(h.acme, 'GET', `/v1/tasks/${task.id}/content`)
    t.equal(video.headers.etag, `"${sampleSha256}"`)
    t.same(video.bytes, sampleVideo)
  })
}

t.test('a truncated body fails the attempt with a clear reason, leaves no object, and is retried', async (t) => {
  // Retries far apart: the failed attempt stays visible in the task read.
  const h = await harness(t, { config: { archiveRetryBaseDelayMs: 3_600_000 } })
  h.push({ route: 'file', truncatedVideo: true })
  const created = await h.send(h.acme, 'POST', '/v1/videos/generations')
  const id = JSON.parse(created.body).id as string
  let archive: Record<string, unknown> | undefined
  for (let i = 0; i < 500 && archive?.error === undefined; i++) {
    archive = JSON.parse((await h.send(h.acme, 'GET', `/v1/tasks/${id}`)).body).archive
    if (archive?.error === undefined) await sleep(20)
  }
  const reason = 'video 0: the video was cut short (connection closed before its end)'
  t.same(archive, { status: 'pending', error: reason }, 'pending (a retry is due later), with the reason')
  t.same(await filesIn(h.dir), [], 'no object and no temp file')
  t.match(h.logs.find((line) => line.msg === 'archive attempt failed, will retry'), { reason, attempt: 1, next_attempt_at: String }, 'the log says why')
  // Until the retry, content streams from the upstream link (whole again: the fault was for one download).
  const video = await h.send(h.acme, 'GET', `/v1/tasks/${id}/content`)
  t.equal(video.statusCode, 200)
  t.same(video.bytes, sampleVideo)
})

t.test('a download that hangs past the timeout is retried', async (t) => {
  const h = await harness(t, { config: { archiveDownloadTimeoutMs: 200 } })
  h.push({ route: 'file', hang: true })
  const { task } = await createAndArchive(h)
  t.equal(task.archive.status, 'archived')
})

t.test('ARCHIVE_DOWNLOAD_THREADS=0: the same archive and the same refusals, on the main thread', async (t) => {
  const h = await harness(t, { config: { archiveDownloadThreads: 0, archiveMaxBytes: 100_000 } })
  const { task } = await createAndArchive(h)
  t.equal(task.archive.status, 'archived')
  const video = await h.send(h.acme, 'GET', `/v1/tasks/${task.id}/content`)
  t.equal(video.headers.etag, `"${sampleSha256}"`)
  t.same(video.bytes, sampleVideo)
  h.push({ route: 'file', videoBytes: 200_000, times: Infinity } as Fault)
  const { task: oversized } = await createAndArchive(h)
  t.same(oversized.archive, { status: 'failed', error: 'video 0: the video is larger than ARCHIVE_MAX_BYTES (100000 bytes)' })
  t.same(await filesIn(h.dir), ['0.mp4'], 'the first only')
})

t.test('a DNS-lookup seam (a function: it cannot cross to a thread) keeps downloads on the main thread, where it answers for every hop', async (t) => {
  const lookup: LookupFunction = (hostname, _options, callback) => {
    if (hostname === 'cdn.example') callback(null, [{ address: '10.1.2.3', family: 4 }])
    else callback(Object.assign(new Error(`ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' }), [])
  }
  const h = await harness(t, { dnsLookup: lookup })
  h.push({ route: 'file', redirect: 'http://cdn.example/video.mp4', times: Infinity } as Fault)
  const { task } = await createAndArchive(h)
  // With the real resolver (on a thread) cdn.example would not resolve: the reason says the seam answered.
  t.same(task.archive, { status: 'failed', error: 'video 0: the result URL resolves to a private address, which the gateway does not call (after 1 redirect)' })
  t.same(await filesIn(h.dir), [])
})

t.test('content before the archive is done: 409 for a task still running', async (t) => {
  const simulator = await startTestSimulator(t, { taskDurationMs: 60_000 })
  const acme = makeTenant('acme')
  const { url } = await startTestGateway(t, { upstreamUrl: simulator.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [acme], config: { archiveDir: join(tmpdir(), `vg-unused-${process.pid}`) } })
  t.teardown(async () => { await rm(join(tmpdir(), `vg-unused-${process.pid}`), { recursive: true, force: true }) })
  const created = await request(`${url}/v1/videos/generations`, { method: 'POST', headers: { authorization: acme.authorization, 'content-type': 'application/json' }, body: JSON.stringify(validBody) })
  const { id } = await created.body.json() as { id: string }
  const content = await request(`${url}/v1/tasks/${id}/content`, { headers: { authorization: acme.authorization } })
  const body = await content.body.text()
  assertErrorResponse(t, { statusCode: content.statusCode, headers: content.headers as Record<string, unknown>, body }, { status: 409, code: 'task_not_finished', type: 'invalid_request_error', message: /^The task is (pending|processing): its videos are not ready yet\.$/ })
})
