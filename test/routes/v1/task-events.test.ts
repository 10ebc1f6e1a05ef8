import t from 'tap'
import { makeTenant, startTestGateway, validBody } from '../../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'
import { scrape, scrapeUntil, testMetricsToken } from '../../helpers/metrics.ts'
import { assertErrorResponse } from '../../helpers/assert-error.ts'

interface ServerSentEvent { event: string, id?: string, data?: string }

/** Reads a whole event stream (until the server closes it): its events, comment lines counted apart. */
async function readStream (response: Response): Promise<{ events: ServerSentEvent[], comments: number, retry?: string }> {
  const text = await response.text()
  const events: ServerSentEvent[] = []
  let comments = 0
  let retry: string | undefined
  for (const block of text.split('\n\n').filter((part) => part !== '')) {
    const fields: Record<string, string> = {}
    for (const line of block.split('\n')) {
      if (line.startsWith(':')) { comments++; continue }
      const colon = line.indexOf(': ')
      fields[line.slice(0, colon)] = line.slice(colon + 2)
    }
    if (fields.retry !== undefined) retry = fields.retry
    if (fields.event !== undefined) events.push({ event: fields.event, id: fields.id, data: fields.data })
  }
  return { events, comments, retry }
}

t.test('GET /v1/tasks/:task_id/events', async (t) => {
  let clock = Date.now()
  const upstream = await startTestSimulator(t, { taskDurationMs: 100_000, now: () => clock })
  const acme = makeTenant('acme', { readRateLimit: { max: 10_000, timeWindow: 60_000 } })
  const globex = makeTenant('globex')
  const { app, url } = await startTestGateway(t, {
    upstreamUrl: upstream.url,
    upstreamKey: TEST_UPSTREAM_KEY,
    tenants: [acme, globex],
    config: { taskStatusTtlMs: 50, taskEventsHeartbeatMs: 100, metricsToken: testMetricsToken }
  })
  const headers = { authorization: acme.authorization }
  const newTask = async (prompt = validBody.prompt): Promise<string> =>
    (await (await fetch(`${url}/v1/videos/generations`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify({ ...validBody, prompt }) })).json() as { id: string }).id
  const events = (id: string, extra: Record<string, string> = {}) => fetch(`${url}/v1/tasks/${id}/events`, { headers: { ...headers, ...extra } })

  t.test('one event per change, in order, the terminal one, `end`, then the close', async (t) => {
    const id = await newTask()
    const response = await events(id)
    t.equal(response.status, 200)
    t.equal(response.headers.get('content-type'), 'text/event-stream; charset=utf-8')
    t.equal(response.headers.get('x-accel-buffering'), 'no')
    // Move the task on while the stream is open: 10 %, 10 % again (no event), 40 %, then done.
    const steps = [10_000, 0, 30_000, 60_000]
    const moving = (async () => {
      for (const step of steps) {
        await new Promise((resolve) => setTimeout(resolve, 150))
        clock += step
      }
    })()
    const stream = await readStream(response)
    await moving
    t.equal(stream.retry, '3000')
    const tasks = stream.events.filter((event) => event.event === 'task').map((event) => JSON.parse(event.data as string) as { id: string, status: string, progress: number })
    t.same(tasks.map((task) => `${task.status} ${task.progress}`), ['pending 0', 'processing 10', 'processing 40', 'completed 100'])
    t.ok(tasks.every((task) => task.id === id), 'tenant-scoped ids')
    t.same(stream.events.at(-1), { event: 'end', id: undefined, data: '{"status":"completed"}' })
    t.ok(stream.events.filter((event) => event.event === 'task').every((event) => /^"[\w-]{27}"$/.test(event.id ?? '')), 'each task event carries its ETag as id')
    t.equal(await scrape(url, 'vg_task_watches'), 0, 'nothing left watching')
  })

  t.test('a reconnect after the end gets 204; a finished task streams its state and ends at once', async (t) => {
    const id = await newTask()
    clock += 100_000
    const stream = await readStream(await events(id))
    t.same(stream.events.map((event) => event.event), ['task', 'end'])
    const lastId = stream.events[0]?.id as string
    const again = await events(id, { 'last-event-id': lastId })
    t.equal(again.status, 204, 'EventSource stops on 204')
    t.equal((await events(id, { 'last-event-id': '"older"' })).status, 200)
  })

  t.test('heartbeats keep an idle stream alive; a client that leaves stops the watch', async (t) => {
    const id = await newTask()
    const controller = new AbortController()
    const response = await fetch(`${url}/v1/tasks/${id}/events`, { headers, signal: controller.signal })
    const reader = (response.body as ReadableStream<Uint8Array>).getReader()
    let text = ''
    while ((text.match(/^: keep-alive$/gm) ?? []).length < 3) text += new TextDecoder().decode((await reader.read()).value)
    t.equal(await scrape(url, 'vg_task_watches'), 1)
    t.same(text.match(/^event: \w+/gm), ['event: task'], 'no change, no event: only comments')
    controller.abort()
    await reader.cancel().catch(() => {})
    t.equal(await scrapeUntil(url, 'vg_task_watches', 0), 0)
  })

  t.test('many subscribers on one task: one poll loop, all get the end', async (t) => {
    const id = await newTask()
    const callsBefore = upstream.simulator.calls.task
    const started = performance.now()
    const streams = Promise.all(Array.from({ length: 100 }, async () => await readStream(await events(id))))
    await scrapeUntil(url, 'vg_task_watches', 1)
    setTimeout(() => { clock += 100_000 }, 500)
    const all = await streams
    const seconds = (performance.now() - started) / 1000
    t.ok(all.every((stream) => stream.events.at(-1)?.event === 'end'), 'every subscriber received the end')
    const calls = upstream.simulator.calls.task - callsBefore
    t.ok(calls <= Math.ceil(seconds * 20) + 3, `${calls} upstream calls in ${seconds.toFixed(2)} s for 100 subscribers`)
  })

  t.test('a task that disappears upstream: `event: error` in the one error format, then the close', async (t) => {
    const id = await newTask()
    const response = await events(id)
    upstream.simulator.faults.push({ route: 'task', status: 404, body: { error: { code: 'task_not_found', message: 'Task not found', type: 'invalid_request_error' } } })
    const stream = await readStream(response)
    const last = stream.events.at(-1)
    t.equal(last?.event, 'error')
    t.same(JSON.parse(last?.data as string), { error: { code: 'not_found', message: 'Task not found.', type: 'invalid_request_error', request_id: response.headers.get('x-request-id') } })
  })

  t.test('before the stream: errors are plain answers in the format', async (t) => {
    const id = await newTask()
    const other = await fetch(`${url}/v1/tasks/${id}/events`, { headers: { authorization: globex.authorization } })
    t.equal(other.status, 404)
    t.match(other.headers.get('content-type'), /application\/json/)
    assertErrorResponse(t, { statusCode: other.status, headers: Object.fromEntries(other.headers), body: await other.text() }, { status: 404, code: 'not_found', type: 'invalid_request_error', message: 'Task not found.', param: 'task_id' })
    const anonymous = await fetch(`${url}/v1/tasks/${id}/events`)
    t.equal(anonymous.status, 401)
  })

  t.test('shutting down ends open streams (clients reconnect elsewhere), and the close is not held', async (t) => {
    const id = await newTask()
    const response = await events(id)
    const reading = readStream(response)
    await scrapeUntil(url, 'vg_task_watches', 1)
    const started = performance.now()
    await app.close()
    const stream = await reading
    t.same(stream.events.map((event) => event.event), ['task'], 'the stream ended without `end`: EventSource reconnects')
    t.ok(performance.now() - started < 5000, 'the close did not wait for the stream')
  })
})
