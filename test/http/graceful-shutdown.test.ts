import t from 'tap'
import { connect } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { startTestGateway, makeTenant, validBody } from '../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../helpers/simulator.ts'
import { assertErrorResponse } from '../helpers/assert-error.ts'
import { sampleVideo } from '../../src/simulator/media.ts'

interface RawResponse { statusCode: number, headers: Record<string, string>, body: string }

/** Splits what one keep-alive connection received into its HTTP/1.1 responses (content-length bodies). */
function parseResponses (raw: string): RawResponse[] {
  const responses: RawResponse[] = []
  let rest = raw
  while (rest.length > 0) {
    const end = rest.indexOf('\r\n\r\n')
    if (end === -1) break
    const [statusLine, ...lines] = rest.slice(0, end).split('\r\n')
    const headers = Object.fromEntries(lines.map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]))
    const length = Number(headers['content-length'] ?? 0)
    responses.push({ statusCode: Number(statusLine?.split(' ')[1]), headers, body: rest.slice(end + 4, end + 4 + length) })
    rest = rest.slice(end + 4 + length)
  }
  return responses
}

/** A raw keep-alive connection: what it received, and when it closed. */
function rawConnection (port: number) {
  const socket = connect(port, '127.0.0.1')
  let received = ''
  socket.on('data', (chunk: Buffer) => { received += chunk.toString() })
  const ended = new Promise((resolve) => socket.on('close', resolve))
  return { socket, ended, responses: () => parseResponses(received) }
}

t.test('while the app closes: running requests finish, late ones get 503 shutting_down in the one format', async (t) => {
  const upstream = await startTestSimulator(t)
  const acme = makeTenant('acme')
  const { app, url } = await startTestGateway(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [acme] })
  const port = Number(new URL(url).port)
  upstream.simulator.faults.push({ route: 'create', delayMs: 400 })

  // A request running when the close begins...
  const busy = rawConnection(port)
  const body = JSON.stringify(validBody)
  busy.socket.write(`POST /v1/videos/generations HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ${acme.authorization}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`)
  // ...and one whose headers are still arriving (Node keeps that connection open too).
  const arriving = rawConnection(port)
  arriving.socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n')
  while (upstream.simulator.calls.create === 0) await sleep(5)
  const closed = app.close()
  await sleep(50)
  arriving.socket.write('\r\n')
  await Promise.all([busy.ended, arriving.ended])
  await closed

  const [running] = busy.responses()
  t.equal(running?.statusCode, 200, 'the running request gets its real answer')
  t.match(JSON.parse(running?.body ?? '{}'), { status: 'pending' })
  t.equal(running?.headers.connection, 'close', 'and its connection ends with it, so that the close is not held')

  const [late] = arriving.responses()
  t.ok(late !== undefined, 'the late request got an answer')
  if (late === undefined) return
  assertErrorResponse(t, late, { status: 503, code: 'shutting_down', type: 'api_error', message: 'This gateway instance is shutting down; retry the request.' })
  t.equal(late.headers['retry-after'], '1')
  t.equal(late.headers.connection, 'close')
})

t.test('a streamed answer whose headers went out before the close: its connection ends with it, not at the keep-alive timeout', async (t) => {
  const upstream = await startTestSimulator(t, { taskDurationMs: 0 })
  const acme = makeTenant('acme')
  // No archive: the content streams from the upstream's link, here slowly.
  const { app, url } = await startTestGateway(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [acme], config: { archiveAllowedSources: '127.0.0.0/8' } })
  // No keep-alive timeout at all: a connection the close leaves open stays open, and the test fails.
  app.server.keepAliveTimeout = 0
  const port = Number(new URL(url).port)
  const created = await fetch(`${url}/v1/videos/generations`, { method: 'POST', headers: { authorization: acme.authorization, 'content-type': 'application/json' }, body: JSON.stringify(validBody) })
  const { id } = await created.json() as { id: string }
  upstream.simulator.faults.push({ route: 'file', slowVideo: 20, chunkBytes: 2048 })

  const streaming = rawConnection(port)
  let received = ''
  streaming.socket.on('data', (chunk: Buffer) => { received += chunk.toString('latin1') })
  streaming.socket.write(`GET /v1/tasks/${id}/content HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ${acme.authorization}\r\n\r\n`)
  while (!received.includes('\r\n\r\n')) await sleep(5)
  const closed = app.close()
  await streaming.ended
  await closed

  const head = received.slice(0, received.indexOf('\r\n\r\n'))
  t.match(head, /^HTTP\/1\.1 200 /, 'the answer started before the close')
  t.notMatch(head, /connection: close/i, 'its headers went out before the close, so they could not say Connection: close')
  t.equal(Buffer.byteLength(received.slice(received.indexOf('\r\n\r\n') + 4), 'latin1'), sampleVideo.length, 'the whole video, then the connection closed by the gateway')
})
