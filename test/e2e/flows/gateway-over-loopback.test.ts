import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { request } from 'undici'
import { logCollector, makeTenant, startTestGateway, validBody } from '../../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'

/**
 * The product as a client sees it: a listening gateway talking over loopback
 * to a listening simulator. Every request below is real HTTP.
 */
t.test('create, poll to completion, fetch the video: over real sockets', async (t) => {
  const upstream = await startTestSimulator(t, { taskDurationMs: 400 })
  const acme = makeTenant('acme', { rateLimit: { max: 200, timeWindow: 60_000 }, readRateLimit: { max: 1000, timeWindow: 60_000 } })
  const globex = makeTenant('globex')
  const logs = logCollector()
  const { url } = await startTestGateway(t, {
    upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [acme, globex], logger: { level: 'info', stream: logs.stream }
  })
  const call = async (method: 'GET' | 'POST', path: string, tenant = acme, body?: unknown) => {
    const response = await request(`${url}${path}`, {
      method,
      headers: { authorization: tenant.authorization, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body)
    })
    return { status: response.statusCode, headers: response.headers, json: await response.body.json() as Record<string, any> }
  }

  const created = await call('POST', '/v1/videos/generations', acme, { ...validBody, n: 2, duration: 6 })
  t.equal(created.status, 200)
  t.equal(created.json.status, 'pending')
  t.match(created.headers['x-request-id'], /.+/)

  let task = created.json
  for (let attempt = 0; attempt < 50 && task.status !== 'completed'; attempt++) {
    await sleep(50)
    const polled = await call('GET', `/v1/tasks/${task.id}`)
    t.equal(polled.status, 200)
    task = polled.json
  }
  t.equal(task.status, 'completed')
  t.equal(task.id, created.json.id, 'the id stays the tenant-scoped one')
  t.equal(task.results.length, 2)
  const video = await request(task.results[0])
  t.equal(video.statusCode, 200)
  t.equal(video.headers['content-type'], 'video/mp4')
  await video.body.arrayBuffer()

  const foreign = await call('GET', `/v1/tasks/${task.id}`, globex)
  t.equal(foreign.status, 404, 'another tenant cannot read it')
  t.equal(foreign.json.error.code, 'not_found')

  t.test('concurrent creates: all answered, all distinct, none lost', async (t) => {
    const before = upstream.simulator.calls.create
    const results = await Promise.all(Array.from({ length: 60 }, (_, index) => call('POST', '/v1/videos/generations', acme, { ...validBody, prompt: `scene ${index}` })))
    t.same(results.map((result) => result.status), Array(60).fill(200))
    t.equal(new Set(results.map((result) => result.json.id)).size, 60)
    t.equal(upstream.simulator.calls.create - before, 60, 'exactly one upstream call each')
  })

  t.test('an upstream reset reaches the caller in the error format over HTTP', async (t) => {
    upstream.simulator.faults.push({ route: 'create', reset: 'before-headers' })
    const failed = await call('POST', '/v1/videos/generations', acme, validBody)
    t.equal(failed.status, 502)
    t.same(Object.keys(failed.json.error).sort(), ['code', 'message', 'request_id', 'type'])
    t.equal(failed.json.error.code, 'upstream_unavailable')
    const next = await call('POST', '/v1/videos/generations', acme, validBody)
    t.equal(next.status, 200, 'the gateway recovers at once')
  })

  t.test('the log: one line per request, no key anywhere', async (t) => {
    const accessLines = logs.lines.filter((line) => line.msg === 'request')
    t.ok(accessLines.length >= 60)
    t.match(accessLines[0], { request_id: String, tenant: acme.id, method: 'POST', route: '/v1/videos/generations', status: 200, upstreamStatus: 200, upstreamMs: Number, ms: Number })
    const everything = JSON.stringify(logs.lines)
    t.notMatch(everything, TEST_UPSTREAM_KEY)
    t.notMatch(everything, acme.key)
    t.notMatch(everything, globex.key)
  })
})
