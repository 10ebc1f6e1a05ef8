import t, { type Test } from 'tap'
import { randomBytes } from 'node:crypto'
import { Webhook } from 'standardwebhooks'
import type { FastifyInstance } from 'fastify'
import { buildTestApp, expectedError, logCollector, makeTenant, validBody, type TestTenant } from '../../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'
import { attemptsRecorded, loopbackAllowList, manualClock, startReceiver, testWebhookPollMs, testWebhookSecret, webhookQuietPeriod, type Receiver } from '../../helpers/webhooks.ts'
import type { StartedSimulator } from '../../../src/simulator/start.ts'

const minute = 60_000

interface Harness {
  app: FastifyInstance
  upstream: StartedSimulator
  clock: ReturnType<typeof manualClock>
  acme: TestTenant
  other: TestTenant
  receiver: Receiver
  /** every log line the gateway wrote */
  logs: Array<Record<string, unknown>>
  /** what the tasks feature's finished event told its listeners */
  finished: unknown[]
  /** creates a task with callback_url; returns its scoped id and the token the upstream was given */
  create (options?: { prompt?: string, url?: string }): Promise<{ taskId: string, callbackPath: string }>
  /** moves both clocks past the end of every task, so the upstream reports them finished */
  finishTasks (): void
  callback (path: string): Promise<Awaited<ReturnType<FastifyInstance['inject']>>>
  deliveries (taskId: string, tenant?: TestTenant): Promise<Awaited<ReturnType<FastifyInstance['inject']>>>
  /** waits until the task's deliveries list `count` attempts in all (the worker makes them on its own) */
  recorded (taskId: string, count: number): Promise<Array<Record<string, any>>>
  /** lets the worker poll many times: for a test that expects no attempt */
  quiet (): Promise<void>
}

/**
 * A gateway (app.inject) on a simulator with an injected clock, a loopback
 * receiver (allow-listed), and the callbacks posted by the test itself with
 * the token the upstream received: the retry schedule runs on the moved clock
 * (the worker polls every few ms, and finds a retry due once the clock says
 * so), never on real minutes; the test sees the attempts as a client does.
 */
async function harness (t: Test, options: { acmeSecrets?: string[] } = {}): Promise<Harness> {
  const clock = manualClock()
  const upstream = await startTestSimulator(t, { now: clock.now, taskDurationMs: 10_000, allowPrivateCallbackUrls: true })
  const acme = makeTenant('acme', { webhookSecrets: options.acmeSecrets ?? [testWebhookSecret] })
  const logs = logCollector()
  const finished: unknown[] = []
  const other = makeTenant('other', { webhookSecrets: [testWebhookSecret] })
  const receiver = await startReceiver(t)
  const app = await buildTestApp(t, {
    upstreamUrl: upstream.url,
    upstreamKey: TEST_UPSTREAM_KEY,
    tenants: [acme, other],
    logger: { level: 'info', stream: logs.stream },
    config: { publicBaseUrl: 'http://127.0.0.1:9', webhookAllowedDestinations: loopbackAllowList, webhookPollIntervalMs: testWebhookPollMs },
    // the task cache and the retry schedule share the simulator's clock: nothing is due before the test moves it
    seams: { clock: clock.now }
  })
  app.taskStatus.onFinished(({ tenantId, upstreamTaskId, snapshot }) => { finished.push({ tenantId, upstreamTaskId, status: snapshot.task.status }) })
  await app.ready()
  return {
    app,
    upstream,
    clock,
    acme,
    other,
    receiver,
    logs: logs.lines,
    finished,
    async create (options = {}) {
      const response = await app.inject({
        method: 'POST',
        url: '/v1/videos/generations',
        headers: { authorization: acme.authorization },
        payload: { ...validBody, prompt: options.prompt ?? validBody.prompt, callback_url: options.url ?? receiver.url }
      })
      t.equal(response.statusCode, 200, response.body)
      const sent = upstream.simulator.calls.log.filter((call) => call.route === 'create').at(-1)?.body as { callback_url: string }
      const callbackUrl = new URL(sent.callback_url)
      return { taskId: response.json().id, callbackPath: callbackUrl.pathname }
    },
    finishTasks () { clock.advance(11_000) },
    callback: (path) => app.inject({ method: 'POST', url: path, headers: { 'content-type': 'application/json' }, payload: { id: 'anything', status: 'completed' } }),
    deliveries: (taskId, tenant = acme) => app.inject({ method: 'GET', url: `/v1/webhooks/deliveries?task_id=${encodeURIComponent(taskId)}`, headers: { authorization: tenant.authorization } }),
    recorded: async (taskId, count) => await attemptsRecorded(app, acme.authorization, taskId, count),
    quiet: webhookQuietPeriod
  }
}

t.test('a finished task is relayed to the tenant, signed per Standard Webhooks, with its tenant-scoped id', async (t) => {
  const h = await harness(t)
  const { taskId, callbackPath } = await h.create()
  t.match(callbackPath, /^\/callbacks\/evolink\/[A-Za-z0-9_-]{43}$/, 'the upstream got the gateway\'s own URL with a token, not the tenant\'s')
  const sentBody = h.upstream.simulator.calls.log.filter((call) => call.route === 'create').at(-1)?.body as Record<string, unknown>
  t.notMatch(JSON.stringify(sentBody), h.receiver.url, 'the tenant\'s URL never reaches the upstream')

  h.finishTasks()
  const answer = await h.callback(callbackPath)
  t.equal(answer.statusCode, 200, answer.body)
  t.same(answer.json(), { received: true })
  await h.recorded(taskId, 1)

  t.equal(h.receiver.received.length, 1)
  const [delivery] = h.receiver.received
  const verified = new Webhook(testWebhookSecret).verify(delivery!.body, delivery!.headers as Record<string, string>) as Record<string, any>
  t.equal(verified.type, 'video.generation.task.completed')
  t.equal(verified.data.id, taskId, 'the tenant-scoped id, not the upstream\'s')
  t.equal(verified.data.status, 'completed')
  t.equal(verified.data.results.length, 1)
  t.match(delivery!.headers['webhook-id'], /^msg_[A-Za-z0-9_-]{22}$/)
  t.match(delivery!.headers['webhook-signature'], /^v1,[A-Za-z0-9+/=]+$/)
  t.throws(() => new Webhook('whsec_' + randomBytes(24).toString('base64')).verify(delivery!.body, delivery!.headers as Record<string, string>), 'another secret does not verify')

  const listed = await h.deliveries(taskId)
  t.equal(listed.statusCode, 200)
  t.match(listed.json(), {
    data: [{
      id: delivery!.headers['webhook-id'],
      task_id: taskId,
      url: h.receiver.url,
      event_type: 'video.generation.task.completed',
      status: 'succeeded',
      next_attempt_at: null,
      failure_reason: null,
      attempts: [{ attempt: 1, response_status: 200, error: null }]
    }]
  })

  t.test('the callback fed the status cache: a task read does not ask the upstream again', async (t) => {
    const before = h.upstream.simulator.calls.task
    const read = await h.app.inject({ method: 'GET', url: `/v1/tasks/${taskId}`, headers: { authorization: h.acme.authorization } })
    t.equal(read.statusCode, 200)
    t.equal(read.json().status, 'completed')
    t.equal(h.upstream.simulator.calls.task, before)
  })

  t.test('the upstream calling back again (its retries) delivers nothing more, and the task is finished once', async (t) => {
    const finished = { tenantId: h.acme.id, upstreamTaskId: taskId.split('.')[0], status: 'completed' }
    t.same(h.finished, [finished, finished], 'the first callback reported it, and so did the task read above')
    const again = await h.callback(callbackPath)
    t.equal(again.statusCode, 200)
    await h.quiet()
    t.equal(h.receiver.received.length, 1)
    t.same(h.finished, [finished, finished], 'a repeated callback reports nothing more')
    const usage = await h.app.inject({ method: 'GET', url: '/v1/usage', headers: { authorization: h.acme.authorization } })
    t.equal(usage.json().total.tasks_completed, 1, 'counted once, however often it was seen')
  })

  t.test('a redelivery sends the same message again, with the same webhook-id', async (t) => {
    const id = delivery!.headers['webhook-id'] as string
    const response = await h.app.inject({ method: 'POST', url: `/v1/webhooks/deliveries/${id}/redeliver`, headers: { authorization: h.acme.authorization } })
    t.equal(response.statusCode, 202, response.body)
    t.match(response.json(), { id, status: 'pending' })
    await h.recorded(taskId, 2)
    t.equal(h.receiver.received.length, 2)
    t.equal(h.receiver.received[1]!.headers['webhook-id'], id)
    t.equal(h.receiver.received[1]!.body, delivery!.body)
    const listed = await h.deliveries(taskId)
    t.match(listed.json().data[0], { status: 'succeeded', attempts: [{ attempt: 1 }, { attempt: 2, response_status: 200 }] })
  })

  t.test('another tenant sees none of it: 404 for the task and for the delivery', async (t) => {
    const listed = await h.deliveries(taskId, h.other)
    t.equal(listed.statusCode, 404)
    t.match(listed.json(), expectedError('not_found', 'invalid_request_error', 'Task not found.', /.+/, 'task_id'))
    const redeliver = await h.app.inject({ method: 'POST', url: `/v1/webhooks/deliveries/${delivery!.headers['webhook-id'] as string}/redeliver`, headers: { authorization: h.other.authorization } })
    t.equal(redeliver.statusCode, 404)
    t.same(redeliver.json(), expectedError('not_found', 'invalid_request_error', 'Delivery not found.', redeliver.json().error.request_id, 'delivery_id'))
  })
})

t.test('a receiver that fails three times then succeeds gets exactly one successful delivery, on the schedule, with one webhook-id', async (t) => {
  const h = await harness(t)
  h.receiver.answers.push({ status: 500 }, { status: 502 }, { status: 503 })
  const { taskId, callbackPath } = await h.create()
  h.finishTasks()
  t.equal((await h.callback(callbackPath)).statusCode, 200)

  await h.recorded(taskId, 1)
  t.equal(h.receiver.received.length, 1, 'the first attempt goes at once')
  const first = (await h.deliveries(taskId)).json().data[0]
  t.equal(first.status, 'pending')
  t.equal(first.next_attempt_at, new Date(h.clock.now() + 5_000).toISOString(), 'the next one 5 s later')

  for (const [wait, attempts] of [[5_000, 2], [5 * minute, 3], [30 * minute, 4]] as const) {
    h.clock.advance(wait - 1)
    await h.quiet()
    t.equal(h.receiver.received.length, attempts - 1, `nothing before the ${wait} ms step is due`)
    h.clock.advance(1)
    await h.recorded(taskId, attempts)
    t.equal(h.receiver.received.length, attempts, `attempt ${attempts} after ${wait} ms`)
  }
  h.clock.advance(24 * 60 * minute)
  await h.quiet()
  t.equal(h.receiver.received.length, 4, 'nothing after the success')

  const ids = new Set(h.receiver.received.map((request) => request.headers['webhook-id']))
  t.equal(ids.size, 1, 'the same webhook-id on every attempt')
  for (const request of h.receiver.received) new Webhook(testWebhookSecret).verify(request.body, request.headers as Record<string, string>)
  const listed = (await h.deliveries(taskId)).json().data
  t.equal(listed.length, 1)
  t.match(listed[0], { status: 'succeeded', next_attempt_at: null })
  t.same(listed[0].attempts.map((attempt: { response_status: number }) => attempt.response_status), [500, 502, 503, 200])
})

t.test('Retry-After sets the next attempt; 410 stops for good', async (t) => {
  const h = await harness(t)
  h.receiver.answers.push({ status: 429, headers: { 'retry-after': '120' } }, { status: 410 })
  const { taskId, callbackPath } = await h.create()
  h.finishTasks()
  await h.callback(callbackPath)
  await h.recorded(taskId, 1)
  t.equal((await h.deliveries(taskId)).json().data[0].next_attempt_at, new Date(h.clock.now() + 120_000).toISOString())
  h.clock.advance(120_000)
  await h.recorded(taskId, 2)
  t.equal(h.receiver.received.length, 2)
  h.clock.advance(48 * 60 * minute)
  await h.quiet()
  t.equal(h.receiver.received.length, 2, 'no attempt after 410')
  t.match((await h.deliveries(taskId)).json().data[0], { status: 'failed', failure_reason: 'the receiver answered 410 Gone', next_attempt_at: null })
})

t.test('redirects are not followed: a 3xx is a failed attempt', async (t) => {
  const h = await harness(t)
  const elsewhere = await startReceiver(t)
  h.receiver.answers.push({ status: 307, headers: { location: elsewhere.url } })
  const { taskId, callbackPath } = await h.create()
  h.finishTasks()
  await h.callback(callbackPath)
  await h.recorded(taskId, 1)
  t.equal(elsewhere.received.length, 0)
  t.match((await h.deliveries(taskId)).json().data[0], { status: 'pending', attempts: [{ response_status: 307 }] })
})

t.test('after the last attempt the delivery is failed', async (t) => {
  const h = await harness(t)
  for (let i = 0; i < 10; i++) h.receiver.answers.push({ status: 500 })
  const { taskId, callbackPath } = await h.create()
  h.finishTasks()
  await h.callback(callbackPath)
  // Each attempt, then the clock past any retry delay; twice more past the last one, when nothing is left to make.
  for (let i = 1; i <= 10; i++) {
    if (i <= 8) await h.recorded(taskId, i)
    else await h.quiet()
    h.clock.advance(10 * 60 * minute)
  }
  t.equal(h.receiver.received.length, 8, 'WEBHOOK_MAX_ATTEMPTS (8)')
  t.match((await h.deliveries(taskId)).json().data[0], { status: 'failed', failure_reason: 'no success after 8 attempts', next_attempt_at: null })
})

t.test('a forged upstream callback (bad token) is refused and delivers nothing', async (t) => {
  const h = await harness(t)
  const { taskId, callbackPath } = await h.create()
  h.finishTasks()
  for (const path of [
    `/callbacks/evolink/${randomBytes(32).toString('base64url')}`,
    callbackPath.slice(0, -1) + (callbackPath.endsWith('A') ? 'B' : 'A'),
    '/callbacks/evolink/short',
    `/callbacks/evolink/${'x'.repeat(500)}`
  ]) {
    const answer = await h.callback(path)
    t.equal(answer.statusCode, 404, path)
    t.same(answer.json(), expectedError('not_found', 'invalid_request_error', 'Unknown callback.', answer.json().error.request_id))
  }
  await h.quiet()
  t.equal(h.receiver.received.length, 0)
  t.same((await h.deliveries(taskId)).json(), { data: [] })
  const logged = JSON.stringify(h.logs)
  t.notOk(logged.includes(callbackPath.split('/').at(-1)!), 'no token, real or forged, reaches the log')
  t.ok(h.logs.some((line) => line.route === '/callbacks/evolink/:token' && line.status === 404), 'the refusals are logged by route')
})

t.test('the upstream callback: its body is not read, whatever its type; an oversized one is 413', async (t) => {
  const h = await harness(t)
  const { taskId, callbackPath } = await h.create()
  h.finishTasks()
  const plain = await h.app.inject({ method: 'POST', url: callbackPath, headers: { 'content-type': 'text/plain' }, payload: 'not json at all' })
  t.equal(plain.statusCode, 200, plain.body)
  const none = await h.app.inject({ method: 'POST', url: callbackPath })
  t.equal(none.statusCode, 200, none.body)
  const huge = await h.app.inject({ method: 'POST', url: callbackPath, headers: { 'content-type': 'application/json' }, payload: 'x'.repeat(1_048_577) })
  t.equal(huge.statusCode, 413)
  t.equal(huge.json().error.code, 'payload_too_large')
  await h.recorded(taskId, 1)
  await h.quiet()
  t.equal(h.receiver.received.length, 1, 'one delivery for the three callbacks')
})

t.test('secret rotation: each of the tenant\'s secrets signs, so a receiver on either one verifies', async (t) => {
  const newSecret = 'whsec_' + randomBytes(32).toString('base64')
  const h = await harness(t, { acmeSecrets: [newSecret, testWebhookSecret] })
  const { taskId, callbackPath } = await h.create()
  h.finishTasks()
  await h.callback(callbackPath)
  await h.recorded(taskId, 1)
  // (and its log line, written just after, is in the log checked below)
  await h.quiet()
  const [delivery] = h.receiver.received
  t.match(delivery!.headers['webhook-signature'], /^v1,\S+ v1,\S+$/)
  for (const secret of [newSecret, testWebhookSecret]) {
    t.doesNotThrow(() => new Webhook(secret).verify(delivery!.body, delivery!.headers as Record<string, string>))
  }
  t.notOk(JSON.stringify(h.logs).includes(newSecret.slice(6)), 'no secret in the log')
})

t.test('a callback for a task the upstream does not report finished relays nothing (the body is not trusted)', async (t) => {
  const h = await harness(t)
  const { taskId, callbackPath } = await h.create()
  const answer = await h.callback(callbackPath)
  t.equal(answer.statusCode, 409)
  t.same(h.finished, [], 'not finished')
  t.same(answer.json(), expectedError('callback_task_not_finished', 'invalid_request_error', 'The task is not finished according to the video provider; nothing was relayed.', answer.json().error.request_id))
  await h.quiet()
  t.equal(h.receiver.received.length, 0)
  t.same((await h.deliveries(taskId)).json(), { data: [] })
})

t.test('a callback that comes before the create\'s answer is registered is 409, and the upstream\'s retry delivers', async (t) => {
  const h = await harness(t)
  // The create's steps one by one, as the route takes them: prepare, reserve, (the upstream call), register.
  const tenant = h.app.tenantRegistry.current.byId.get(h.acme.id)!
  const prepared = await h.app.webhooks.prepare(tenant, h.receiver.url)
  await prepared.reserve()
  const callbackPath = new URL(prepared.upstreamCallbackUrl).pathname
  const early = await h.callback(callbackPath)
  t.equal(early.statusCode, 409)
  t.same(early.json(), expectedError('callback_not_registered', 'invalid_request_error', 'The task of this callback is not registered yet; nothing was relayed.', early.json().error.request_id))
  t.equal(h.upstream.simulator.calls.task, 0, 'no task read: there is no task to read yet')

  // The upstream's answer (a task of this tenant's, made without a callback so that only this registration relays it).
  const created = await h.app.inject({ method: 'POST', url: '/v1/videos/generations', headers: { authorization: h.acme.authorization }, payload: validBody })
  const taskId = created.json().id as string
  await prepared.register({ taskId, upstreamTaskId: h.app.taskIds.unscope(h.acme.id, taskId)! })
  h.finishTasks()
  t.equal((await h.callback(callbackPath)).statusCode, 200, 'the retry, once registered')
  await h.recorded(taskId, 1)
  t.equal(h.receiver.received.length, 1)
  t.equal(JSON.parse(h.receiver.received[0]!.body).data.id, taskId)
})

t.test('a failed task is relayed as video.generation.task.failed', async (t) => {
  const h = await harness(t)
  const { taskId, callbackPath } = await h.create({ prompt: 'A storm [fail:content_policy_violation]' })
  h.finishTasks()
  await h.callback(callbackPath)
  await h.recorded(taskId, 1)
  const verified = new Webhook(testWebhookSecret).verify(h.receiver.received[0]!.body, h.receiver.received[0]!.headers as Record<string, string>) as Record<string, any>
  t.match(verified, { type: 'video.generation.task.failed', data: { id: taskId, status: 'failed', error: { code: 'content_policy_violation' } } })
})

t.test('GET /v1/webhooks/deliveries: a task without deliveries is an empty list; a forged id is 404', async (t) => {
  const h = await harness(t)
  const { taskId } = await h.create()
  t.same((await h.deliveries(taskId)).json(), { data: [] })
  const forged = await h.deliveries('task-unified-1757169743-abcdefgh.AAAAAAAAAAAAAAAAAAAAAA')
  t.equal(forged.statusCode, 404)
  const missing = await h.app.inject({ method: 'GET', url: '/v1/webhooks/deliveries', headers: { authorization: h.acme.authorization } })
  t.equal(missing.statusCode, 400)
  t.equal(missing.json().error.param, 'task_id')
  const anonymous = await h.app.inject({ method: 'GET', url: `/v1/webhooks/deliveries?task_id=${taskId}` })
  t.equal(anonymous.statusCode, 401)
})
