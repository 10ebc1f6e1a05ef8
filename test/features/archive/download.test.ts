import { once } from 'node:events'
import { createServer, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { createSourceDownloader, DownloadFailure } from '../../../src/features/archive/download.ts'
import { createDirectoryStorage } from '../../../src/features/archive/storage/directory.ts'
import { parseDestinationPolicy } from '../../../src/http/destination.ts'

t.test('a video over ARCHIVE_MAX_BYTES without a Content-Length: the put fails and the source\'s body is dropped with it', async (t) => {
  // Chunked, 64 KiB at a time and never ending on its own: only the downloader can end it.
  let answer: ServerResponse | undefined
  const server = createServer((_request, response) => {
    answer = response
    response.writeHead(200, { 'content-type': 'video/mp4' })
    const chunk = Buffer.alloc(64 * 1024)
    const more = (): void => { while (!response.destroyed && response.write(chunk)); }
    response.on('drain', more)
    more()
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { server.closeAllConnections(); server.close() })
  const dir = await mkdtemp(join(tmpdir(), 'vg-archive-download-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const storage = await createDirectoryStorage({ root: dir })
  // Timeouts far away: the body must be dropped by the failure, not by a timer.
  const downloader = createSourceDownloader({ policy: parseDestinationPolicy('127.0.0.0/8', 'ARCHIVE_ALLOWED_SOURCES'), maxBytes: 100_000, idleTimeoutMs: 600_000, totalTimeoutMs: 600_000 })
  t.teardown(() => downloader.close())

  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/video.mp4`
  const failure = await downloader.download({ url, key: 'acme/task/0.mp4', storage, signal: new AbortController().signal }).catch((error: unknown) => error)
  t.ok(failure instanceof DownloadFailure)
  t.match(failure, { message: 'the video is larger than ARCHIVE_MAX_BYTES (100000 bytes)', permanent: true })
  t.same(await readdir(dir, { recursive: true }), ['.incoming'], 'no object, no temp file')
  // The source's connection is closed by the failure (it would otherwise stay open, half-read, until the idle timeout).
  if (answer !== undefined && !answer.destroyed) await once(answer, 'close')
  t.ok(answer?.destroyed, 'the source\'s answer was cut off')
})
