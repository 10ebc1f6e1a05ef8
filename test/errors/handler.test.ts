import { connect } from 'node:net'
import t from 'tap'
import { buildTestApp, logCollector, makeTenant, startTestGateway, validBody } from '../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../helpers/simulator.ts'
import { assertErrorResponse } from '../helpers/assert-error.ts'

t.test('anything unexpected is a 500 with no internals, logged at error with its stack', async (t) => {
  const upstream = await startTestSimulator(t)
  const logs = logCollector()
  const app = await buildTestApp(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [makeTenant('acme')], logger: { level: 'info', stream: logs.stream } })
  // A route that fails the way a bug would: its message must not reach the caller.
  app.get('/boom', async () => { throw new TypeError(`cannot read properties of undefined (secret at /srv/app.js:12, key ${TEST_UPSTREAM_KEY})`) })
  const response = await app.inject({ method: 'GET', url: '/boom' })
  assertErrorResponse(t, response, { status: 500, code: 'internal_error', type: 'api_error', message: 'Internal server error.' })
  t.notMatch(response.body, /secret|srv|TypeError|sk-evo/)
  const line = logs.lines.find((entry) => entry.level === 50)
  t.match(line, { code: 'internal_error', err: { type: 'TypeError', stack: /boom|test/, message: /key \[redacted\]/ } })
  t.notMatch(JSON.stringify(logs.lines), TEST_UPSTREAM_KEY, 'an error message that carries the key is scrubbed in the log')
})

t.test('request ids: a sane incoming x-request-id is kept, anything else replaced', async (t) => {
  const upstream = await startTestSimulator(t)
  const app = await buildTestApp(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [makeTenant('acme')] })
  const kept = await app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'trace-abc.123:4' } })
  t.equal(kept.headers['x-request-id'], 'trace-abc.123:4')
  for (const hostile of ['<script>', 'a'.repeat(129), 'two words', 'x\u00e9']) {
    const replaced = await app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': hostile } })
    t.match(replaced.headers['x-request-id'], /^[0-9a-f-]{36}$/, `replaced ${JSON.stringify(hostile).slice(0, 20)}`)
  }
  const missing = await app.inject({ method: 'GET', url: '/v1/tasks/x' })
  t.match(missing.headers['x-request-id'], /^[0-9a-f-]{36}$/, 'errors carry one too')
})

t.test('framework-level client errors use the format', async (t) => {
  const upstream = await startTestSimulator(t)
  const acme = makeTenant('acme')
  const app = await buildTestApp(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [acme] })
  const badUrl = await app.inject({ method: 'GET', url: '/v1/tasks/%E0%A4%A', headers: { authorization: acme.authorization } })
  assertErrorResponse(t, badUrl, { status: 400, code: 'invalid_request', type: 'invalid_request_error', message: "'/v1/tasks/%E0%A4%A' is not a valid url component" })
  const wrongMethod = await app.inject({ method: 'PUT', url: '/v1/videos/generations', headers: { authorization: acme.authorization } })
  assertErrorResponse(t, wrongMethod, { status: 404, code: 'not_found', type: 'invalid_request_error', message: 'No route PUT /v1/videos/generations.' })
})

t.test('a valid request pipelined before malformed bytes gets its own answer first, then the 400', async (t) => {
  const upstream = await startTestSimulator(t)
  const acme = makeTenant('acme')
  const { url } = await startTestGateway(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [acme] })
  const created = await fetch(`${url}/v1/videos/generations`, { method: 'POST', headers: { authorization: acme.authorization, 'content-type': 'application/json' }, body: JSON.stringify(validBody) })
  const { id } = await created.json() as { id: string }
  // One write: a complete keep-alive GET, then a line that is no request at all.
  const bytes = `GET /v1/tasks/${id} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: ${acme.authorization}\r\n\r\nnot-a-request-line\r\n\r\n`
  const received = await sendRaw(url, bytes)
  const statusLines = received.match(/HTTP\/1\.1 \d{3}/g)
  t.same(statusLines, ['HTTP/1.1 200', 'HTTP/1.1 400'], 'the task answer, then the malformed-request error, in order')
  t.match(received, new RegExp(`"id":"${id}"`), 'the first answer is the task')
  t.match(received, /"code":"invalid_request","message":"Malformed HTTP request\."/)
})

t.test('a request whose own body breaks the parser gets the 400 at once', async (t) => {
  const upstream = await startTestSimulator(t)
  const acme = makeTenant('acme')
  const { url } = await startTestGateway(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [acme] })
  const bytes = `POST /v1/videos/generations HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: ${acme.authorization}\r\n` +
    'content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n'
  const received = await sendRaw(url, bytes)
  t.same(received.match(/HTTP\/1\.1 \d{3}/g), ['HTTP/1.1 400'])
  t.match(received, /"code":"invalid_request","message":"Malformed HTTP request\."/)
  t.equal(upstream.simulator.calls.create, 0, 'nothing reached the upstream')
})

/** Writes raw bytes in one go and collects everything until the server closes. */
async function sendRaw (url: string, bytes: string): Promise<string> {
  return await new Promise<string>((resolve, reject) => {
    const chunks: Buffer[] = []
    const socket = connect(Number(new URL(url).port), '127.0.0.1', () => socket.write(bytes))
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')))
    socket.on('error', reject)
  })
}
