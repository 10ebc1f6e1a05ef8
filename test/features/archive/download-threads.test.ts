import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { MessageChannel } from 'node:worker_threads'
import t, { type Test } from 'tap'
import { createDownloadThreads, policyToString, serveDownloads, type DownloadThreadInit, type FromThread } from '../../../src/features/archive/download-threads.ts'
import { DownloadFailure } from '../../../src/features/archive/download.ts'
import { createDirectoryStorage } from '../../../src/features/archive/storage/directory.ts'
import { parseDestinationPolicy } from '../../../src/http/destination.ts'

const video = randomBytes(300_000)
const videoSha256 = createHash('sha256').update(video).digest('hex')

/** A source with one route per failure class; `stalled` holds the answers left hanging. */
async function source (t: Test): Promise<{ base: string, stalled: ServerResponse[] }> {
  const stalled: ServerResponse[] = []
  const server = createServer((request, response) => {
    switch (request.url) {
      case '/ok.mp4':
        response.writeHead(200, { 'content-type': 'video/mp4; codecs="avc1"', 'content-length': String(video.length) }).end(video)
        return
      case '/missing.mp4':
        response.writeHead(404, { 'content-type': 'text/plain' }).end('no')
        return
      case '/page.mp4':
        response.writeHead(200, { 'content-type': 'text/html' }).end('<html>')
        return
      case '/big.mp4':
        response.writeHead(200, { 'content-type': 'video/mp4', 'content-length': '200000000' }).flushHeaders()
        stalled.push(response)
        return
      case '/short.mp4':
        // Half the announced bytes, then the connection closes.
        response.writeHead(200, { 'content-type': 'video/mp4', 'content-length': String(video.length) })
        response.write(video.subarray(0, video.length / 2), () => response.socket?.destroy())
        return
      case '/redirect.mp4':
        response.writeHead(302, { location: 'http://10.1.2.3/video.mp4' }).end()
        return
      case '/stall.mp4':
        // Headers and a first chunk, then silence.
        response.writeHead(200, { 'content-type': 'video/mp4', 'content-length': String(video.length) })
        response.write(video.subarray(0, 1000))
        stalled.push(response)
        return
      default:
        response.writeHead(500).end()
    }
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { server.closeAllConnections(); server.close() })
  return { base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, stalled }
}

async function archiveDir (t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'vg-archive-threads-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  // Opened (and cleaned) by the main thread first, as the gateway does; the threads open it without clean-up.
  await createDirectoryStorage({ root: dir })
  return dir
}

function init (root: string, overrides: Partial<DownloadThreadInit> = {}): DownloadThreadInit {
  return { policy: '127.0.0.0/8', maxBytes: 1_000_000, idleTimeoutMs: 30_000, totalTimeoutMs: 60_000, storage: { kind: 'directory', root }, ...overrides }
}

/** Every file under `dir`, temp files included. */
async function filesIn (dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true })
  return entries.filter((entry) => entry.isFile() && !entry.name.endsWith('-thread.mjs')).map((entry) => join(entry.parentPath, entry.name).slice(dir.length + 1)).sort()
}

const failureOf = async (promise: Promise<unknown>): Promise<DownloadFailure> => await promise.then(() => { throw new Error('it did not fail') }, (error: unknown) => error as DownloadFailure)

t.test('policyToString writes a policy back as the setting it was parsed from', async (t) => {
  const setting = 'cdn.example,127.0.0.0/8,10.1.2.3,::1/128'
  const policy = parseDestinationPolicy(setting, 'ARCHIVE_ALLOWED_SOURCES')
  t.equal(policyToString(policy), 'cdn.example,127.0.0.0/8,10.1.2.3/32,::1/128')
  t.same(parseDestinationPolicy(policyToString(policy)), policy)
  t.equal(policyToString(parseDestinationPolicy('')), '')
})

t.test('on threads: a video is stored whole, and each failure class answers as on the main thread, leaving nothing', async (t) => {
  const { base } = await source(t)
  const dir = await archiveDir(t)
  const threads = createDownloadThreads({ size: 2, init: init(dir, { maxBytes: 1_000_000 }) })
  t.teardown(() => threads.close())
  const signal = new AbortController().signal

  const stored = await threads.download({ url: `${base}/ok.mp4`, key: 'acme/task/0.mp4', signal })
  t.same(stored, { size: video.length, sha256: videoSha256, contentType: 'video/mp4' })
  t.same(await readFile(join(dir, 'acme/task/0.mp4')), video, 'the object, written by the thread')

  const cases = [
    { path: '/missing.mp4', message: 'the source answered 404', permanent: false },
    { path: '/page.mp4', message: 'the source sent "text/html", not a video', permanent: true },
    { path: '/big.mp4', message: 'the video is larger than ARCHIVE_MAX_BYTES (1000000 bytes)', permanent: true },
    { path: '/short.mp4', message: 'the video was cut short (connection closed before its end)', permanent: false },
    { path: '/redirect.mp4', message: 'the result URL is a private address, which the gateway does not call (after 1 redirect)', permanent: true }
  ]
  // At once, over both threads.
  const failures = await Promise.all(cases.map(async ({ path }, index) => await failureOf(threads.download({ url: base + path, key: `acme/task/${index + 1}.mp4`, signal }))))
  for (const [index, { path, message, permanent }] of cases.entries()) {
    t.ok(failures[index] instanceof DownloadFailure, path)
    t.match(failures[index], { message, permanent }, path)
  }
  t.match(failures[3]!.cause, { name: String, message: String }, 'the cause crosses back (for the debug log)')
  t.same(await filesIn(dir), ['acme/task/0.mp4'], 'no other object, no temp file')
})

t.test('on a thread: silence past the idle timeout fails as timed out, without an object', async (t) => {
  const { base } = await source(t)
  const dir = await archiveDir(t)
  const threads = createDownloadThreads({ size: 1, init: init(dir, { idleTimeoutMs: 200 }) })
  t.teardown(() => threads.close())
  const failure = await failureOf(threads.download({ url: `${base}/stall.mp4`, key: 'acme/task/0.mp4', signal: new AbortController().signal }))
  t.match(failure, { message: 'the download timed out', permanent: false })
  t.same(await filesIn(dir), [])
})

t.test('cancelled mid-body: the thread aborts the put, removes its temp file, then answers aborted', async (t) => {
  const { base, stalled } = await source(t)
  const dir = await archiveDir(t)
  const threads = createDownloadThreads({ size: 1, init: init(dir) })
  t.teardown(() => threads.close())
  const controller = new AbortController()
  const download = threads.download({ url: `${base}/stall.mp4`, key: 'acme/task/0.mp4', signal: controller.signal })
  while (stalled.length === 0) await new Promise((resolve) => setTimeout(resolve, 10))
  // The first chunk reached the temp file.
  while ((await filesIn(dir)).length === 0) await new Promise((resolve) => setTimeout(resolve, 10))
  controller.abort()
  t.match(await failureOf(download), { message: 'the download was aborted', permanent: false })
  t.same(await filesIn(dir), [], 'when it answers, its temp file is gone')

  t.match(await failureOf(threads.download({ url: `${base}/ok.mp4`, key: 'acme/task/1.mp4', signal: controller.signal })), { message: 'the download was aborted' }, 'an aborted signal starts nothing')
  t.same(await threads.download({ url: `${base}/ok.mp4`, key: 'acme/task/1.mp4', signal: new AbortController().signal }), { size: video.length, sha256: videoSha256, contentType: 'video/mp4' }, 'the thread goes on with the next')
})

t.test('closed with a download under way: it fails as aborted, and later ones are refused', async (t) => {
  const { base, stalled } = await source(t)
  const dir = await archiveDir(t)
  const threads = createDownloadThreads({ size: 1, init: init(dir) })
  const download = threads.download({ url: `${base}/stall.mp4`, key: 'acme/task/0.mp4', signal: new AbortController().signal })
  while (stalled.length === 0) await new Promise((resolve) => setTimeout(resolve, 10))
  await threads.close()
  t.match(await failureOf(download), { message: 'the download was aborted', permanent: false })
  t.match(await failureOf(threads.download({ url: `${base}/ok.mp4`, key: 'acme/task/1.mp4', signal: new AbortController().signal })), { message: 'the download was aborted' })
  t.notOk((await filesIn(dir)).some((file) => !file.startsWith('.incoming/')), 'no object (a temp file of the ended thread goes at the next start)')
})

t.test('a thread that dies fails its downloads as retryable, and the next download starts a new one', async (t) => {
  const dir = await archiveDir(t)
  // A thread that exits on its first message.
  const entry = join(dir, 'dying-thread.mjs')
  await writeFile(entry, "import { parentPort } from 'node:worker_threads'\nparentPort.on('message', () => process.exit(3))\n")
  const threads = createDownloadThreads({ size: 1, init: init(dir), entry: new URL(`file://${entry}`) })
  t.teardown(() => threads.close())
  const signal = new AbortController().signal
  t.match(await failureOf(threads.download({ url: 'http://127.0.0.1:9/a.mp4', key: 'acme/task/0.mp4', signal })), { message: 'the download thread stopped (exit code 3)', permanent: false })
  t.match(await failureOf(threads.download({ url: 'http://127.0.0.1:9/a.mp4', key: 'acme/task/0.mp4', signal })), { message: 'the download thread stopped (exit code 3)', permanent: false }, 'a new thread, which died too')

  const throwing = join(dir, 'throwing-thread.mjs')
  await writeFile(throwing, "import { parentPort } from 'node:worker_threads'\nparentPort.on('message', () => { throw new Error('boom') })\n")
  const others = createDownloadThreads({ size: 1, init: init(dir), entry: new URL(`file://${throwing}`) })
  t.teardown(() => others.close())
  t.match(await failureOf(others.download({ url: 'http://127.0.0.1:9/a.mp4', key: 'acme/task/0.mp4', signal })), { message: 'the download thread stopped (boom)', permanent: false })
})

t.test('the thread\'s side in-process: answers per id, ignores unknown cancels, reports a storage it cannot open', async (t) => {
  const { base, stalled } = await source(t)
  const dir = await archiveDir(t)
  const channel = new MessageChannel()
  const served = serveDownloads(channel.port2, init(dir))
  const answers: FromThread[] = []
  channel.port1.on('message', (message: FromThread) => answers.push(message))
  const answered = async (count: number): Promise<void> => { while (answers.length < count) await new Promise((resolve) => setTimeout(resolve, 10)) }

  channel.port1.postMessage({ type: 'cancel', id: 99 })
  channel.port1.postMessage({ type: 'download', id: 1, url: `${base}/ok.mp4`, key: 'acme/task/0.mp4' })
  await answered(1)
  t.same(answers[0], { type: 'done', id: 1, result: { size: video.length, sha256: videoSha256, contentType: 'video/mp4' } })
  channel.port1.postMessage({ type: 'download', id: 2, url: `${base}/page.mp4`, key: 'acme/task/1.mp4' })
  await answered(2)
  t.same(answers[1], { type: 'failed', id: 2, message: 'the source sent "text/html", not a video', permanent: true })
  // Closing aborts what runs.
  channel.port1.postMessage({ type: 'download', id: 3, url: `${base}/stall.mp4`, key: 'acme/task/2.mp4' })
  while (stalled.length === 0) await new Promise((resolve) => setTimeout(resolve, 10))
  await served.close()
  channel.port1.close()
  t.same(await filesIn(dir), ['acme/task/0.mp4'])

  const broken = new MessageChannel()
  // A root that is no path: opening the storage fails in the thread, and every download says so.
  const unopenable = serveDownloads(broken.port2, init(dir, { storage: { kind: 'directory', root: 42 as unknown as string } }))
  const [answer] = await Promise.all([once(broken.port1, 'message'), broken.port1.postMessage({ type: 'download', id: 7, url: `${base}/ok.mp4`, key: 'acme/task/3.mp4' })])
  t.match(answer[0], { type: 'failed', id: 7, message: /^the download thread cannot open the archive storage \(.+\)$/, permanent: false, cause: { name: 'TypeError' } })
  await unopenable.close()
  broken.port1.close()
})

t.test('an S3 descriptor opens the bucket in the thread without the start-up clean-up', async (t) => {
  const { openStorage } = await import('../../../src/features/archive/storage/open.ts')
  // Nothing listens there: a clean-up (ListMultipartUploads) would fail the opening.
  const storage = await openStorage({ kind: 's3', bucket: 'b', region: 'us-east-1', forcePathStyle: true, endpoint: 'http://127.0.0.1:9', prefix: 'p/' }, { clean: false })
  t.equal(storage.kind, 's3')
  t.same(storage.descriptor, { kind: 's3', bucket: 'b', region: 'us-east-1', forcePathStyle: true, endpoint: 'http://127.0.0.1:9', prefix: 'p/' })
  await storage.close()
})
