import t from 'tap'
import { buildTestApp, logCollector, makeTenant } from '../../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'
import { assertErrorResponse } from '../../helpers/assert-error.ts'

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
