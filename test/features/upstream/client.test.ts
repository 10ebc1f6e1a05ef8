import t from 'tap'
import { createServer as createHttpServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { buildTestApp, logCollector, makeTenant, validBody } from '../../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'
import { assertErrorResponse, type ExpectedError } from '../../helpers/assert-error.ts'
import type { Fault } from '../../../src/simulator/faults.ts'
import { freePort } from '../../helpers/server-process.ts'

/** Every way the upstream can fail maps to its row of the error table (the mapper, end to end). */
t.test('upstream failures reach the caller in the one error format', async (t) => {
  const upstream = await startTestSimulator(t)
  const acme = makeTenant('acme')
  const logs = logCollector()
  const app = await buildTestApp(t, {
    upstreamUrl: upstream.url,
    upstreamKey: TEST_UPSTREAM_KEY,
    tenants: [acme],
    // One failure after another on purpose: the breaker (tested in upstream-breaker.test.ts) would open.
    config: { upstreamTimeoutMs: 300, upstreamMaxResponseBytes: 4096, upstreamBreakerFailures: 0 },
    logger: { level: 'info', stream: logs.stream }
  })
  const create = () => app.inject({ method: 'POST', url: '/v1/videos/generations', headers: { authorization: acme.authorization }, payload: validBody })

  const upstream502 = { status: 502, type: 'upstream_error' }
  const cases: Array<[string, Fault, ExpectedError, Record<string, string>?]> = [
    ['upstream 400 keeps its code and message', { route: 'create', status: 400, body: { error: { code: 'invalid_request', message: 'Image could not be fetched', type: 'invalid_request_error', param: 'image_urls' } } },
      { status: 400, code: 'invalid_request', type: 'invalid_request_error', message: 'Image could not be fetched', param: 'image_urls' }],
    ['upstream 400 with its own code', { route: 'create', status: 400, body: { error: { code: 'content_policy_violation', message: 'Prompt rejected', type: 'invalid_request_error' } } },
      { status: 400, code: 'content_policy_violation', type: 'invalid_request_error', message: 'Prompt rejected' }],
    ['upstream 400 without a body', { route: 'create', status: 400, body: 'nope' },
      { status: 400, code: 'invalid_request', type: 'invalid_request_error', message: 'The video provider rejected the request.' }],
    ['upstream 401', { route: 'create', status: 401 }, { ...upstream502, code: 'upstream_auth_failed', message: 'The gateway could not authenticate with the video provider.' }],
    ['upstream 403', { route: 'create', status: 403 }, { ...upstream502, code: 'upstream_auth_failed', message: 'The gateway could not authenticate with the video provider.' }],
    ['upstream 402', { route: 'create', status: 402 }, { status: 503, type: 'upstream_error', code: 'upstream_quota_exhausted', message: 'The video provider account behind this gateway is out of quota.' }],
    ['upstream 404', { route: 'create', status: 404 }, { status: 404, type: 'invalid_request_error', code: 'not_found', message: 'Task not found.' }],
    ['upstream 429 with Retry-After', { route: 'create', status: 429, headers: { 'retry-after': '17' } },
      { status: 429, type: 'rate_limit_error', code: 'upstream_rate_limited', message: 'The video provider is rate limiting this gateway; retry later.' }, { 'retry-after': '17' }],
    ['upstream 429 without Retry-After', { route: 'create', status: 429 },
      { status: 429, type: 'rate_limit_error', code: 'upstream_rate_limited', message: /retry later/ }, { 'retry-after': '5' }],
    ['upstream 429 with a hostile Retry-After', { route: 'create', status: 429, headers: { 'retry-after': 'soon; evil' } },
      { status: 429, type: 'rate_limit_error', code: 'upstream_rate_limited', message: /retry later/ }, { 'retry-after': '5' }],
    ['upstream 500', { route: 'create', status: 500 }, { ...upstream502, code: 'upstream_error', message: 'The video provider failed (status 500).' }],
    ['upstream 503', { route: 'create', status: 503 }, { ...upstream502, code: 'upstream_error', message: 'The video provider failed (status 503).' }],
    ['upstream 524', { route: 'create', status: 524 }, { ...upstream502, code: 'upstream_error', message: 'The video provider failed (status 524).' }],
    ['reset before headers', { route: 'create', reset: 'before-headers' }, { ...upstream502, code: 'upstream_unavailable', message: 'The video provider could not be reached.' }],
    ['reset after headers', { route: 'create', reset: 'after-headers' }, { ...upstream502, code: 'upstream_unavailable', message: 'The video provider could not be reached.' }],
    ['garbage body', { route: 'create', garbage: '<html>oops</html>' }, { ...upstream502, code: 'bad_upstream_response', message: 'The video provider sent a response the gateway could not read.' }],
    ['garbage with a non-JSON content type', { route: 'create', garbage: '{"id":"x"}', contentType: 'text/html' }, { ...upstream502, code: 'bad_upstream_response', message: /could not read/ }],
    ['JSON that is not a task', { route: 'create', status: 200, body: { hello: 'world' } }, { ...upstream502, code: 'bad_upstream_response', message: /could not read/ }],
    ['JSON array', { route: 'create', status: 200, body: [1, 2] }, { ...upstream502, code: 'bad_upstream_response', message: /could not read/ }],
    ['a body over the read limit', { route: 'create', bodyBytes: 100_000 }, { ...upstream502, code: 'bad_upstream_response', message: /could not read/ }],
    ['slower than the timeout', { route: 'create', delayMs: 1000 }, { status: 504, type: 'upstream_error', code: 'upstream_timeout', message: 'The video provider did not answer within 300 ms.' }],
    ['never answers', { route: 'create', hang: true }, { status: 504, type: 'upstream_error', code: 'upstream_timeout', message: /did not answer within 300 ms/ }],
    ['a body that never ends', { route: 'create', bodyNeverEnds: true }, { status: 504, type: 'upstream_error', code: 'upstream_timeout', message: /did not answer within 300 ms/ }]
  ]
  for (const [name, fault, expected, headers] of cases) {
    t.test(name, async (t) => {
      upstream.simulator.faults.clear()
      upstream.simulator.faults.push(fault)
      const response = await create()
      assertErrorResponse(t, response, expected)
      for (const [header, value] of Object.entries(headers ?? {})) t.equal(response.headers[header], value, header)
    })
  }

  t.test('an upstream message that echoes the key is scrubbed, and the key is in no log line', async (t) => {
    upstream.simulator.faults.push({ route: 'create', echoAuthorization: true })
    const response = await create()
    t.equal(response.statusCode, 400)
    t.notMatch(response.body, TEST_UPSTREAM_KEY)
    t.match(response.json().error.message, /\[redacted\]/)
    t.notMatch(JSON.stringify(logs.lines), TEST_UPSTREAM_KEY, 'not in the logs either')
    t.notMatch(JSON.stringify(logs.lines), acme.key, 'nor the tenant key')
  })

  t.test('5xx rows log at error with the cause; 4xx at info', async (t) => {
    upstream.simulator.faults.push({ route: 'create', status: 401, body: { error: { code: 'unauthorized', message: 'Invalid token', type: 'authentication_error' } } })
    const response = await create()
    const requestId = response.headers['x-request-id']
    const errorLine = logs.lines.find((line) => line.request_id === requestId && line.level === 50)
    t.match(errorLine, { code: 'upstream_auth_failed', upstream: { upstreamStatus: 401, upstreamCode: 'unauthorized', upstreamMessage: 'Invalid token' } })
    const accessLine = logs.lines.find((line) => line.request_id === requestId && line.msg === 'request')
    t.match(accessLine, { tenant: acme.id, status: 502, upstreamStatus: 401, route: '/v1/videos/generations' })
  })
})

t.test('an upstream that refuses connections is upstream_unavailable', async (t) => {
  // A port nothing listens on, outside the kernel's ephemeral range (another socket of the suite cannot take it meanwhile).
  const port = await freePort()
  const acme = makeTenant('acme')
  const app = await buildTestApp(t, { upstreamUrl: `http://127.0.0.1:${port}`, upstreamKey: TEST_UPSTREAM_KEY, tenants: [acme] })
  const response = await app.inject({ method: 'POST', url: '/v1/videos/generations', headers: { authorization: acme.authorization }, payload: validBody })
  assertErrorResponse(t, response, { status: 502, code: 'upstream_unavailable', type: 'upstream_error', message: 'The video provider could not be reached.' })
})

t.test('a base URL with a path prefix is honoured, and only the gateway\'s own headers go upstream', async (t) => {
  const seen: Array<{ url: string | undefined, headers: Record<string, unknown> }> = []
  const server = createHttpServer((request, response) => {
    seen.push({ url: request.url, headers: request.headers })
    response.writeHead(200, { 'content-type': 'application/json' })
    response.end(JSON.stringify({ id: 'task-unified-1-abcdefgh', status: 'pending' }))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  const { port } = server.address() as AddressInfo
  const acme = makeTenant('acme')
  const app = await buildTestApp(t, { upstreamUrl: `http://127.0.0.1:${port}/evolink/`, upstreamKey: TEST_UPSTREAM_KEY, tenants: [acme] })
  const response = await app.inject({
    method: 'POST',
    url: '/v1/videos/generations',
    headers: { authorization: acme.authorization, cookie: 'session=secret', 'x-forwarded-for': '10.0.0.1', 'idempotency-key': 'k' },
    payload: validBody
  })
  t.equal(response.statusCode, 200)
  t.equal(seen[0]?.url, '/evolink/v1/videos/generations')
  t.equal(seen[0]?.headers.authorization, `Bearer ${TEST_UPSTREAM_KEY}`)
  t.notOk('cookie' in (seen[0]?.headers ?? {}), 'caller headers are not forwarded')
  t.notOk('x-forwarded-for' in (seen[0]?.headers ?? {}))
})
