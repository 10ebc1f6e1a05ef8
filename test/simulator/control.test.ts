import t, { type Test } from 'tap'
import { Agent, request, type Dispatcher } from 'undici'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../helpers/simulator.ts'

const AUTH = { authorization: `Bearer ${TEST_UPSTREAM_KEY}` }
const JSON_AUTH = { ...AUTH, 'content-type': 'application/json' }

function client (t: Test): Dispatcher {
  const agent = new Agent()
  t.teardown(() => agent.destroy())
  return agent
}

async function call (d: Dispatcher, url: string, method: Dispatcher.HttpMethod, body?: unknown, headers: Record<string, string> = JSON_AUTH) {
  const res = await request(url, { method, headers, dispatcher: d, ...(body === undefined ? {} : { body: JSON.stringify(body) }) })
  return { status: res.statusCode, body: await res.body.json() as any }
}

t.test('control endpoints need the bearer key', async (t) => {
  const { url } = await startTestSimulator(t)
  const d = client(t)
  const unauthorized = { error: { code: 'unauthorized', message: 'Invalid or expired token', type: 'authentication_error' } }
  for (const [method, path] of [['POST', '/_simulator/faults'], ['DELETE', '/_simulator/faults'], ['GET', '/_simulator/stats'], ['POST', '/_simulator/reset']] as const) {
    const res = await call(d, url + path, method, undefined, { authorization: 'Bearer wrong' })
    t.equal(res.status, 401, `${method} ${path}`)
    t.strictSame(res.body, unauthorized)
  }
})

t.test('faults over HTTP: queue, stats, clear, reset', async (t) => {
  const { url, simulator } = await startTestSimulator(t)
  const d = client(t)

  const bad = await call(d, `${url}/_simulator/faults`, 'POST', { route: 'create', status: 500, hang: true })
  t.equal(bad.status, 400)
  t.strictSame(bad.body, { error: { code: 'invalid_request', message: 'fault must have exactly one behaviour of status, delayMs, reset, garbage, hang, bodyNeverEnds, bodyBytes, echoAuthorization, redirect, videoBytes, truncatedVideo, slowVideo', type: 'invalid_request_error' } })
  const none = await call(d, `${url}/_simulator/faults`, 'POST', undefined, AUTH)
  t.equal(none.status, 400)
  t.equal(none.body.error.message, 'fault must be an object')

  t.strictSame((await call(d, `${url}/_simulator/faults`, 'POST', { route: 'create', status: 429, headers: { 'retry-after': '3' } })).body, { queued: 1 })
  const queued = await call(d, `${url}/_simulator/faults`, 'POST', { route: 'any', status: 500, times: 'Infinity' })
  t.equal(queued.status, 201)
  t.strictSame(queued.body, { queued: 2 })

  const stats = await call(d, `${url}/_simulator/stats`, 'GET', undefined, AUTH)
  t.strictSame(stats.body, {
    create: 0,
    task: 0,
    file: 0,
    upload: 0,
    log: [],
    faults: [
      { route: 'create', status: 429, headers: { 'retry-after': '3' }, times: 1, remaining: 1 },
      { route: 'any', status: 500, times: null, remaining: null }
    ]
  })

  const limited = await request(`${url}/v1/videos/generations`, { method: 'POST', headers: JSON_AUTH, body: '{}', dispatcher: d })
  t.equal(limited.statusCode, 429)
  t.equal(limited.headers['retry-after'], '3')
  await limited.body.dump()
  const broken = await call(d, `${url}/v1/tasks/task-unified-1-abcdefgh`, 'GET', undefined, { authorization: 'Bearer someone-else' })
  t.equal(broken.status, 500)

  const after = await call(d, `${url}/_simulator/stats`, 'GET', undefined, AUTH)
  t.equal(after.body.create, 1)
  t.equal(after.body.task, 1)
  t.match(after.body.log, [
    { route: 'create', method: 'POST', path: '/v1/videos/generations', authorization: `Bearer ${TEST_UPSTREAM_KEY}`, fault: 'status' },
    { route: 'task', method: 'GET', path: '/v1/tasks/task-unified-1-abcdefgh', authorization: 'Bearer someone-else', fault: 'status' }
  ])
  t.equal(after.body.faults.length, 1)

  t.strictSame((await call(d, `${url}/_simulator/faults`, 'DELETE', undefined, AUTH)).body, { queued: 0 })
  t.equal(simulator.faults.size, 0)
  const created = await call(d, `${url}/v1/videos/generations`, 'POST', { model: 'veo-3.1-fast-generate-preview', prompt: 'x' })
  t.equal(created.status, 200)

  t.strictSame((await call(d, `${url}/_simulator/reset`, 'POST', undefined, AUTH)).body, { reset: true })
  t.strictSame((await call(d, `${url}/_simulator/stats`, 'GET', undefined, AUTH)).body, { create: 0, task: 0, file: 0, upload: 0, log: [], faults: [] })
  t.equal((await call(d, `${url}/v1/tasks/${created.body.id}`, 'GET', undefined, AUTH)).status, 404, 'reset forgets tasks')
})

t.test('control calls are not counted as upstream calls and do not take faults', async (t) => {
  const { url, simulator } = await startTestSimulator(t)
  const d = client(t)
  simulator.faults.push({ route: 'any', status: 500 })
  const stats = await call(d, `${url}/_simulator/stats`, 'GET', undefined, AUTH)
  t.equal(stats.status, 200)
  t.equal(simulator.faults.size, 1)
  t.equal(simulator.calls.log.length, 0)
})
