import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { announcePort, exitWithParent } from './child-protocol.ts'
import { completedTask, createdTask } from './fixtures.ts'

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

function pick (request: IncomingMessage): Answer {
  if (request.url?.startsWith('/_control/') === true) return control(request) ?? notFound
  if (request.headers.authorization !== expectedAuthorization) return unauthorized
  if (request.method === 'GET' && request.url?.startsWith(runningPrefix) === true) {
    const id = request.url.slice('/v1/tasks/'.length)
    runningReads.set(id, (runningReads.get(id) ?? 0) + 1)
    return finished.has(id) ? completed : runningTask
  }
  if (request.method === 'POST' && request.url === '/v1/videos/generations') return created
  if (request.method === 'GET' && request.url?.startsWith('/v1/tasks/') === true) return completed
  return notFound
}

const server = createServer((request: IncomingMessage, response: ServerResponse) => {
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

server.listen(0, '127.0.0.1', () => announcePort(server))
exitWithParent(() => server.close())
