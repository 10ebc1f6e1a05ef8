import { once } from 'node:events'
import { createServer, type IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { buildTestApp, logCollector, makeTenant, validBody } from '../../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'
import { tracesUrl } from '../../../src/features/observability/tracing.ts'

interface OtlpSpan { traceId: string, spanId: string, parentSpanId?: string, name: string, kind: number, attributes: Array<{ key: string, value: Record<string, unknown> }> }
interface OtlpExport { resourceSpans: Array<{ resource: { attributes: Array<{ key: string, value: Record<string, unknown> }> }, scopeSpans: Array<{ spans: OtlpSpan[] }> }> }

/** A loopback OTLP/HTTP collector: every body posted to /v1/traces, parsed. */
async function startCollector (t: { teardown (fn: () => unknown): void }): Promise<{ url: string, exports: OtlpExport[], paths: string[] }> {
  const exports: OtlpExport[] = []
  const paths: string[] = []
  const server = createServer((request: IncomingMessage, response) => {
    const chunks: Buffer[] = []
    request.on('data', (chunk: Buffer) => chunks.push(chunk))
    request.on('end', () => {
      paths.push(`${request.method} ${request.url} ${request.headers['content-type']}`)
      exports.push(JSON.parse(Buffer.concat(chunks).toString('utf8')))
      response.writeHead(200, { 'content-type': 'application/json' }).end('{}')
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => new Promise((resolve) => server.close(resolve)))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, exports, paths }
}

const spansOf = (exports: OtlpExport[]): OtlpSpan[] => exports.flatMap((e) => e.resourceSpans.flatMap((r) => r.scopeSpans.flatMap((s) => s.spans)))
const attribute = (span: OtlpSpan, key: string): unknown => {
  const value = span.attributes.find((a) => a.key === key)?.value
  return value === undefined ? undefined : Object.values(value)[0]
}

// The caller's trace: a W3C traceparent as another service would send it.
const callerTraceId = '4bf92f3577b34da6a3ce929d0e0e4736'
const callerSpanId = '00f067aa0ba902b7'
const traceparent = `00-${callerTraceId}-${callerSpanId}-01`

t.test('with OTEL_EXPORTER_OTLP_ENDPOINT: request and upstream-attempt spans, linked, exported over OTLP/HTTP', async (t) => {
  const collector = await startCollector(t)
  const upstream = await startTestSimulator(t)
  const tenant = makeTenant('traced')
  const logs = logCollector()
  const app = await buildTestApp(t, {
    upstreamUrl: upstream.url,
    upstreamKey: TEST_UPSTREAM_KEY,
    tenants: [tenant],
    logger: { level: 'info', stream: logs.stream },
    config: { otelExporterOtlpEndpoint: collector.url, otelServiceName: 'gateway-under-test', taskStatusTtlMs: 50 }
  })

  const created = await app.inject({ method: 'POST', url: '/v1/videos/generations', headers: { authorization: tenant.authorization, traceparent }, payload: validBody })
  t.equal(created.statusCode, 200)
  // A read whose first attempt gets a 503: retried, two attempts, two client spans.
  upstream.simulator.faults.push({ route: 'task', status: 503 })
  await new Promise((resolve) => setTimeout(resolve, 60))
  const read = await app.inject({ method: 'GET', url: `/v1/tasks/${created.json().id}`, headers: { authorization: tenant.authorization } })
  t.equal(read.statusCode, 200)
  await app.close()

  t.equal(collector.paths[0], 'POST /v1/traces application/json', 'OTLP/HTTP JSON to <endpoint>/v1/traces')
  t.match(collector.exports[0]?.resourceSpans[0]?.resource.attributes, [{ key: 'service.name', value: { stringValue: 'gateway-under-test' } }])
  const spans = spansOf(collector.exports)

  // The create: a server span in the caller's trace, under the caller's span; one upstream attempt under it.
  const createSpan = spans.find((s) => s.name === 'POST /v1/videos/generations')
  if (createSpan === undefined) throw new Error(`no create span in ${JSON.stringify(spans.map((s) => s.name))}`)
  t.equal(createSpan.traceId, callerTraceId, 'the caller\'s trace continues')
  t.equal(createSpan.parentSpanId, callerSpanId, 'under the caller\'s span')
  t.equal(createSpan.kind, 2, 'SERVER')
  t.equal(attribute(createSpan, 'http.response.status_code'), 200)
  t.equal(attribute(createSpan, 'http.route'), '/v1/videos/generations')
  const createAttempts = spans.filter((s) => s.parentSpanId === createSpan.spanId)
  t.equal(createAttempts.length, 1)
  const createAttempt = createAttempts[0] as OtlpSpan
  t.match(createAttempt, { name: 'upstream POST', kind: 3, traceId: callerTraceId })
  t.equal(attribute(createAttempt, 'http.response.status_code'), 200)
  const createCall = upstream.simulator.calls.log.find((call) => call.route === 'create')
  t.equal(createCall?.headers.traceparent, `00-${callerTraceId}-${createAttempt.spanId}-01`, 'the upstream got the attempt\'s traceparent')

  // The read: a trace of its own (no traceparent sent), two attempts under it, the 503 then the 200.
  const readSpan = spans.find((s) => s.name === 'GET /v1/tasks/:task_id')
  if (readSpan === undefined) throw new Error(`no read span in ${JSON.stringify(spans.map((s) => s.name))}`)
  t.not(readSpan.traceId, callerTraceId)
  t.notOk(readSpan.parentSpanId, 'a root span')
  const readAttempts = spans.filter((s) => s.parentSpanId === readSpan.spanId)
  t.same(readAttempts.map((s) => [s.name, attribute(s, 'http.response.status_code')]), [['upstream GET', 503], ['upstream GET', 200]])
  const taskCalls = upstream.simulator.calls.log.filter((call) => call.route === 'task')
  t.same(taskCalls.map((call) => call.headers.traceparent), readAttempts.map((s) => `00-${readSpan.traceId}-${s.spanId}-01`))

  // The access log names each request's trace and span.
  const access = logs.lines.filter((line) => line.msg === 'request')
  t.match(access, [
    { route: '/v1/videos/generations', traceId: callerTraceId, spanId: createSpan.spanId },
    { route: '/v1/tasks/:task_id', traceId: readSpan.traceId, spanId: readSpan.spanId }
  ])
  t.notMatch(JSON.stringify(collector.exports), TEST_UPSTREAM_KEY, 'no upstream key in the spans')
  t.notMatch(JSON.stringify(collector.exports), tenant.key, 'no tenant key in the spans')
})

t.test('off by default: no spans, no traceparent upstream, no trace ids in the log', async (t) => {
  const upstream = await startTestSimulator(t)
  const tenant = makeTenant('untraced')
  const logs = logCollector()
  const app = await buildTestApp(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [tenant], logger: { level: 'info', stream: logs.stream } })
  t.equal(app.tracing, null)
  const created = await app.inject({ method: 'POST', url: '/v1/videos/generations', headers: { authorization: tenant.authorization, traceparent }, payload: validBody })
  t.equal(created.statusCode, 200)
  const createCall = upstream.simulator.calls.log.find((call) => call.route === 'create')
  t.equal(createCall?.headers.traceparent, undefined, 'the caller\'s header is not passed on either')
  const access = logs.lines.find((line) => line.msg === 'request')
  t.equal(access?.traceId, undefined)
})

t.test('the traces URL: the traces endpoint as given, else <endpoint>/v1/traces', async (t) => {
  t.equal(tracesUrl({ tracesEndpoint: '', endpoint: '' }), '')
  t.equal(tracesUrl({ tracesEndpoint: '', endpoint: 'http://collector:4318/' }), 'http://collector:4318/v1/traces')
  t.equal(tracesUrl({ tracesEndpoint: 'http://collector:4318/custom', endpoint: 'http://other:4318' }), 'http://collector:4318/custom')
})

t.test('a collector that is down costs nothing: requests answer, the app closes', async (t) => {
  // A port that was listening and is now closed: every export is refused.
  const gone = createServer()
  gone.listen(0, '127.0.0.1')
  await once(gone, 'listening')
  const port = (gone.address() as AddressInfo).port
  await new Promise((resolve) => gone.close(resolve))
  const upstream = await startTestSimulator(t)
  const tenant = makeTenant('traced-down')
  const logs = logCollector()
  const app = await buildTestApp(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [tenant], logger: { level: 'info', stream: logs.stream }, config: { otelExporterOtlpTracesEndpoint: `http://127.0.0.1:${port}/v1/traces` } })
  const created = await app.inject({ method: 'POST', url: '/v1/videos/generations', headers: { authorization: tenant.authorization }, payload: validBody })
  t.equal(created.statusCode, 200)
  await app.close()
  t.match(logs.lines.find((line) => line.level === 40), { msg: 'tracing: the last spans could not be exported' }, 'closed, with a warning')
})
