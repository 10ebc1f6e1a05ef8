import { createHash } from 'node:crypto'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import { request } from 'undici'
import { sampleVideo } from '../../../src/simulator/media.ts'
import type { SimulatorOptions } from '../../../src/simulator/types.ts'
import { makeTenant, startTestGateway, validBody, buildTestApp, type TestTenant } from '../../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'
import { freePort, loopbackAllowList, manualClock, startReceiver, testWebhookSecret } from '../../helpers/webhooks.ts'

/**
 * Issue 15: a finished task is archived whatever told the gateway it ended —
 * a read (flow.test.ts), the upstream's callback, or a watch (a long-poll, an
 * event stream) that saw the end. Here the client never reads the task: the
 * archive must follow from the one "task finished" event of the tasks feature.
 */

const sampleSha256 = createHash('sha256').update(sampleVideo).digest('hex')

interface Harness {
  url: string
  dir: string
  acme: TestTenant
  /** the simulator's calls to GET /v1/tasks/:id (the gateway's reads) */
  upstreamReads (): number
  send (method: string, path: string, body?: unknown): Promise<{ statusCode: number, headers: Record<string, unknown>, bytes: Buffer, body: string }>
}

async function archiveDir (t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'vg-archive-triggers-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  return dir
}

const metricsToken = 'test-metrics-token-0123456789'
const archiveConfig = (dir: string): Record<string, unknown> => ({ metricsToken, archiveDir: dir, archiveAllowedSources: '127.0.0.0/8', archivePollIntervalMs: 20, archiveRetryBaseDelayMs: 20 })

function sender (url: string, acme: TestTenant): Harness['send'] {
  return async (method, path, body) => {
    const answer = await request(url + path, {
      method: method as 'GET',
      headers: { authorization: acme.authorization, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) })
    })
    const bytes = Buffer.from(await answer.body.arrayBuffer())
    return { statusCode: answer.statusCode, headers: answer.headers as Record<string, unknown>, bytes, body: bytes.toString('utf8') }
  }
}

/** Waits (without reading any task) until the tenant's usage counts the archived video. */
async function archivedVideos (h: Harness, expected: number): Promise<number> {
  let count = 0
  for (let i = 0; i < 400; i++) {
    count = JSON.parse((await h.send('GET', '/v1/usage')).body).total.archived_videos as number
    if (count >= expected) return count
    await sleep(25)
  }
  return count
}

async function filesIn (dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true })
  return entries.filter((entry) => entry.isFile()).map((entry) => entry.name)
}

/** What every trigger must lead to: the object stored, counted, and served by the content endpoint with the SHA-256 ETag. */
async function assertArchived (t: Test, h: Harness, id: string): Promise<void> {
  t.equal(await archivedVideos(h, 1), 1, 'the usage report counts the archived video')
  t.same(await filesIn(h.dir), ['0.mp4'], 'the archived object is stored (one object, no temp file)')
  const usage = JSON.parse((await h.send('GET', '/v1/usage')).body)
  t.equal(usage.total.archived_bytes, sampleVideo.length)
  const metrics = await (await request(`${h.url}/metrics`, { headers: { authorization: `Bearer ${metricsToken}` } })).body.text()
  t.match(metrics, /^vg_archive_jobs_total\{outcome="archived"\} 1$/m, 'one archive job ended archived')
  const video = await h.send('GET', `/v1/tasks/${id}/content`)
  t.equal(video.statusCode, 200)
  t.equal(video.headers.etag, `"${sampleSha256}"`, 'served from the archive: the ETag is the SHA-256 computed on the way in')
  t.same(video.bytes, sampleVideo)
}

for (const { name, callbackUrl } of [
  { name: 'a create with callback_url', callbackUrl: true },
  { name: 'a tenant with webhookEndpoints (the gateway asks for the callback itself)', callbackUrl: false }
]) {
  t.test(`${name}: the upstream's callback alone archives the task, which nobody reads`, async (t) => {
    const upstream = await startTestSimulator(t, { taskDurationMs: 300, allowPrivateCallbackUrls: true })
    const receiver = await startReceiver(t)
    const dir = await archiveDir(t)
    const acme = makeTenant('acme', {
      webhookSecrets: [testWebhookSecret],
      ...(callbackUrl ? {} : { webhookEndpoints: [{ url: receiver.url, events: ['video.completed'], format: 'native' }] })
    })
    const port = await freePort()
    const app = await buildTestApp(t, {
      upstreamUrl: upstream.url,
      upstreamKey: TEST_UPSTREAM_KEY,
      tenants: [acme],
      config: { publicBaseUrl: `http://127.0.0.1:${port}`, webhookAllowedDestinations: loopbackAllowList, ...archiveConfig(dir) }
    })
    await app.listen({ host: '127.0.0.1', port })
    const h: Harness = { url: `http://127.0.0.1:${port}`, dir, acme, upstreamReads: () => upstream.simulator.calls.task, send: sender(`http://127.0.0.1:${port}`, acme) }

    const created = await h.send('POST', '/v1/videos/generations', callbackUrl ? { ...validBody, callback_url: receiver.url } : validBody)
    t.equal(created.statusCode, 200)
    const task = JSON.parse(created.body)
    t.not(task.status, 'completed', 'the create answers a task still running')
    await receiver.receivedCount(1)
    t.match(upstream.simulator.callbacks.attempts, [{ attempt: 1, statusCode: 200 }], 'the gateway took the upstream\'s callback')
    await assertArchived(t, h, task.id)
  })
}

/** A gateway watching tasks often, against a simulator on a clock the test moves: the task ends when the test says so. */
async function watchedHarness (t: Test): Promise<Harness & { finish (): void }> {
  const clock = manualClock()
  const durationMs = 60_000
  const upstream = await startTestSimulator(t, { taskDurationMs: durationMs, now: clock.now } satisfies Partial<SimulatorOptions>)
  const dir = await archiveDir(t)
  const acme = makeTenant('acme')
  const { url } = await startTestGateway(t, {
    upstreamUrl: upstream.url,
    upstreamKey: TEST_UPSTREAM_KEY,
    tenants: [acme],
    config: { taskStatusTtlMs: 50, ...archiveConfig(dir) }
  })
  return { url, dir, acme, upstreamReads: () => upstream.simulator.calls.task, send: sender(url, acme), finish: () => { clock.advance(durationMs) } }
}

t.test('a client that only long-polls until the end gets the task archived', async (t) => {
  const h = await watchedHarness(t)
  const task = JSON.parse((await h.send('POST', '/v1/videos/generations', validBody)).body)
  t.equal(task.status, 'pending')
  const answer = h.send('GET', `/v1/tasks/${task.id}?wait=30`)
  // The long-poll has read the task (pending) and waits on the watch; then the upstream finishes it.
  while (h.upstreamReads() < 2) await sleep(10)
  h.finish()
  const polled = await answer
  t.equal(polled.statusCode, 200)
  const body = JSON.parse(polled.body)
  t.equal(body.status, 'completed', 'the watch saw the end')
  t.equal(body.archive?.status, 'pending', 'the archive was queued before the answer went out')
  await assertArchived(t, h, task.id)
})

t.test('a client that only holds the event stream until the end gets the task archived', async (t) => {
  const h = await watchedHarness(t)
  const task = JSON.parse((await h.send('POST', '/v1/videos/generations', validBody)).body)
  t.equal(task.status, 'pending')
  const stream = await request(`${h.url}/v1/tasks/${task.id}/events`, { headers: { authorization: h.acme.authorization } })
  t.equal(stream.statusCode, 200)
  let text = ''
  const ended = (async () => {
    for await (const chunk of stream.body) text += String(chunk)
  })()
  while (h.upstreamReads() < 2) await sleep(10)
  t.match(text, /^event: task\ndata: .*"status":"pending"/m, 'the stream opened on the running task')
  h.finish()
  await ended
  t.match(text, /^event: end\ndata: \{"status":"completed"\}$/m, 'the stream saw the end, then closed')
  await assertArchived(t, h, task.id)
})
