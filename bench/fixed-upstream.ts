import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { buffer } from 'node:stream/consumers'
import { paddedSampleVideo } from '../src/simulator/media.ts'
import { announcePort, exitWithParent } from './child-protocol.ts'
import { archiveTaskPrefix, completedTask, createdTask } from './fixtures.ts'

/**
 * A stand-in for Evolink that costs next to nothing: plain node:http, answers
 * serialized once. The baseline and the gateway call this same process, so its
 * cost is the same on both sides. It checks the upstream key, so a proxy that
 * drops the key shows up as non-2xx rather than as a flattering figure.
 *
 *   node bench/fixed-upstream.ts <upstream key>
 */
const apiKey = process.argv[2] ?? ''
if (apiKey === '') throw new Error('usage: node bench/fixed-upstream.ts <upstream key>')
const expectedAuthorization = `Bearer ${apiKey}`

interface Answer {
  status: number
  headers: Record<string, string | number>
  body: Buffer
}

function answer (status: number, value: unknown): Answer {
  const body = Buffer.from(JSON.stringify(value))
  return { status, headers: { 'content-type': 'application/json', 'content-length': body.length }, body }
}

const created = answer(200, createdTask)
const completed = answer(200, completedTask)
const unauthorized = answer(401, { error: { code: 'unauthorized', message: 'Invalid API key', type: 'authentication_error' } })
const notFound = answer(404, { error: { code: 'not_found', message: 'Not found', type: 'invalid_request_error' } })

/**
 * Tasks whose id starts with this prefix are running (`processing`) until the
 * bench finishes them through the control route; reads of them are counted,
 * so that the polling figures can say how many reached the upstream.
 */
const runningPrefix = '/v1/tasks/task-unified-running-'
const runningTask = answer(200, { ...completedTask, status: 'processing', progress: 50, results: undefined })
const finished = new Set<string>()
const runningReads = new Map<string, number>()

function control (request: IncomingMessage): Answer | undefined {
  const url = new URL(request.url ?? '/', 'http://upstream')
  const id = url.searchParams.get('id') ?? ''
  if (url.pathname === '/_control/reads') return answer(200, { reads: runningReads.get(id) ?? 0 })
  if (url.pathname === '/_control/finish') {
    finished.add(id)
    return answer(200, { finished: id })
  }
  return undefined
}

/**
 * The archive scenario: `task-unified-archive-<bytes>-<tag>` is a completed task
 * whose one result is `/files/<bytes>/<tag>.mp4` here, a valid MP4 of that size
 * (the simulator's sample video padded with a `free` box). Each size is made
 * once and kept whole in this process, so serving it costs a socket write: the
 * archive and the plain download it is compared with fetch the same bytes.
 */
const videos = new Map<number, Promise<Buffer>>()
async function videoOf (bytes: number): Promise<Buffer> {
  let video = videos.get(bytes)
  if (video === undefined) {
    video = buffer(paddedSampleVideo(bytes).body())
    videos.set(bytes, video)
  }
  return await video
}
let origin = ''
const archivePath = /^\/v1\/tasks\/task-unified-archive-(\d{1,10})-([\w-]{1,100})$/
const filePath = /^\/files\/(\d{1,10})\/([\w-]{1,100})\.mp4$/

function archiveTask (bytes: string, tag: string): Answer {
  return answer(200, { ...completedTask, id: `${archiveTaskPrefix}${bytes}-${tag}`, results: [`${origin}/files/${bytes}/${tag}.mp4`] })
}

function pick (request: IncomingMessage): Answer {
  if (request.url?.startsWith('/_control/') === true) return control(request) ?? notFound
  if (request.headers.authorization !== expectedAuthorization) return unauthorized
  const archive = request.method === 'GET' ? archivePath.exec(request.url ?? '') : null
  if (archive !== null) return archiveTask(archive[1]!, archive[2]!)
  if (request.method === 'GET' && request.url?.startsWith(runningPrefix) === true) {
    const id = request.url.slice('/v1/tasks/'.length)
    runningReads.set(id, (runningReads.get(id) ?? 0) + 1)
    return finished.has(id) ? completed : runningTask
  }
  if (request.method === 'POST' && request.url === '/v1/videos/generations') return created
  if (request.method === 'GET' && request.url?.startsWith('/v1/tasks/') === true) return completed
  return notFound
}

function serveFile (bytes: number, response: ServerResponse): void {
  videoOf(bytes).then((video) => {
    response.writeHead(200, { 'content-type': 'video/mp4', 'content-length': video.length })
    response.end(video)
  }, (error: unknown) => {
    response.writeHead(500).end(String(error))
  })
}

const server = createServer((request: IncomingMessage, response: ServerResponse) => {
  // Result links are public, as a CDN's are (no upstream key).
  const file = request.method === 'GET' ? filePath.exec(request.url ?? '') : null
  if (file !== null) {
    request.resume()
    serveFile(Number(file[1]), response)
    return
  }
  const chosen = pick(request)
  // Answer once the request body is in, as a real server would.
  request.on('end', () => {
    response.writeHead(chosen.status, chosen.headers)
    response.end(chosen.body)
  })
  request.resume()
})
// Longer than a bench round, so both sides' pools stay warm between alternating runs.
server.keepAliveTimeout = 65_000

server.listen(0, '127.0.0.1', () => {
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  announcePort(server)
})
exitWithParent(() => server.close())
