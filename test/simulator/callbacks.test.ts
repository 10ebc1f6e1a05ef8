import t from 'tap'
import { request } from 'undici'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../helpers/simulator.ts'
import { manualClock, startReceiver } from '../helpers/webhooks.ts'

const base = { model: 'veo-3.1-fast-generate-preview', prompt: 'A cat playing piano' }

async function create (url: string, body: unknown): Promise<{ status: number, body: Record<string, unknown> }> {
  const response = await request(`${url}/v1/videos/generations`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TEST_UPSTREAM_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify(body)
  })
  return { status: response.statusCode, body: await response.body.json() as Record<string, unknown> }
}

t.test('callback_url on loopback is refused unless the simulator allows private callback URLs', async (t) => {
  const strict = await startTestSimulator(t)
  const refused = await create(strict.url, { ...base, callback_url: 'http://127.0.0.1:9/hook' })
  t.equal(refused.status, 400)
  t.match(refused.body, { error: { param: 'callback_url' } })

  const lenient = await startTestSimulator(t, { allowPrivateCallbackUrls: true })
  t.equal((await create(lenient.url, { ...base, callback_url: 'http://127.0.0.1:9/hook' })).status, 200)
  t.equal((await create(lenient.url, { ...base, callback_url: 'ftp://127.0.0.1:9/hook' })).status, 400, 'still http(s) only')
})

t.test('a finished task is POSTed to callback_url as the task-status JSON, once on a 2xx', async (t) => {
  const clock = manualClock()
  const simulator = await startTestSimulator(t, { now: clock.now, taskDurationMs: 1000, allowPrivateCallbackUrls: true })
  const receiver = await startReceiver(t)
  const created = await create(simulator.url, { ...base, callback_url: receiver.url })
  clock.advance(1000)
  // A task read finds it completed and sends the callback (the timer would too, in real time).
  const read = await request(`${simulator.url}/v1/tasks/${String(created.body.id)}`, { headers: { authorization: `Bearer ${TEST_UPSTREAM_KEY}` } })
  const status = await read.body.json() as Record<string, unknown>
  await receiver.receivedCount(1)
  await simulator.simulator.callbacks.idle()
  t.equal(receiver.received.length, 1)
  t.same(JSON.parse(receiver.received[0]!.body), status, 'the body is the task-status JSON')
  t.match(receiver.received[0]!.headers['content-type'], /^application\/json/)
  t.same(simulator.simulator.callbacks.attempts, [{ taskId: created.body.id, url: receiver.url, attempt: 1, statusCode: 200 }])
})

t.test('a failing receiver gets up to 3 retries: 4 calls in all', async (t) => {
  const clock = manualClock()
  const simulator = await startTestSimulator(t, { now: clock.now, taskDurationMs: 1000, allowPrivateCallbackUrls: true, callbackRetryDelaysMs: [1, 1, 1] })
  const receiver = await startReceiver(t)
  receiver.answers.push({ status: 500 }, { status: 500 }, { status: 500 }, { status: 500 }, { status: 500 })
  const created = await create(simulator.url, { ...base, prompt: 'x [fail:service_error]', callback_url: receiver.url })
  clock.advance(500)
  await request(`${simulator.url}/v1/tasks/${String(created.body.id)}`, { headers: { authorization: `Bearer ${TEST_UPSTREAM_KEY}` } }).then((response) => response.body.dump())
  await receiver.receivedCount(4)
  await simulator.simulator.callbacks.idle()
  t.equal(receiver.received.length, 4)
  t.same(simulator.simulator.callbacks.attempts.map((attempt) => [attempt.attempt, attempt.statusCode]), [[1, 500], [2, 500], [3, 500], [4, 500]])
  t.match(JSON.parse(receiver.received[0]!.body), { status: 'failed', error: { code: 'service_error' } })
})

t.test('the end-of-task timer sends the callback without any task read (real clock)', async (t) => {
  const simulator = await startTestSimulator(t, { taskDurationMs: 30, allowPrivateCallbackUrls: true })
  const receiver = await startReceiver(t)
  const created = await create(simulator.url, { ...base, callback_url: receiver.url })
  await receiver.receivedCount(1)
  t.match(JSON.parse(receiver.received[0]!.body), { id: created.body.id, status: 'completed', progress: 100 })
  t.equal(simulator.simulator.calls.task, 0)
})
