import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { request } from 'undici'
import { Webhook } from 'standardwebhooks'
import { buildTestApp, logCollector, makeTenant, validBody } from '../../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'
import { attemptsRecorded, freePort, loopbackAllowList, startReceiver, testWebhookSecret } from '../../helpers/webhooks.ts'

/**
 * The relay as it runs: a listening gateway, a listening simulator that calls
 * the gateway back over loopback when the task ends (as the upstream does),
 * and a tenant receiver on loopback (allow-listed). Real sockets, real clock.
 */
t.test('create with callback_url → the upstream calls the gateway back → the tenant gets one signed webhook', async (t) => {
  const upstream = await startTestSimulator(t, { taskDurationMs: 300, allowPrivateCallbackUrls: true })
  const acme = makeTenant('acme', { webhookSecrets: [testWebhookSecret] })
  const receiver = await startReceiver(t)
  const logs = logCollector()
  const port = await freePort()
  const app = await buildTestApp(t, {
    upstreamUrl: upstream.url,
    upstreamKey: TEST_UPSTREAM_KEY,
    tenants: [acme],
    logger: { level: 'info', stream: logs.stream },
    config: { publicBaseUrl: `http://127.0.0.1:${port}`, webhookAllowedDestinations: loopbackAllowList }
  })
  await app.listen({ host: '127.0.0.1', port })

  const created = await request(`http://127.0.0.1:${port}/v1/videos/generations`, {
    method: 'POST',
    headers: { authorization: acme.authorization, 'content-type': 'application/json' },
    body: JSON.stringify({ ...validBody, callback_url: receiver.url })
  })
  t.equal(created.statusCode, 200)
  const task = await created.body.json() as { id: string }

  await receiver.receivedCount(1)
  const [webhook] = receiver.received
  const event = new Webhook(testWebhookSecret).verify(webhook!.body, webhook!.headers as Record<string, string>) as { type: string, data: { id: string, status: string } }
  t.equal(event.type, 'video.generation.task.completed')
  t.equal(event.data.id, task.id)
  t.equal(event.data.status, 'completed')
  t.equal(webhook!.path, '/hooks/video')

  await upstream.simulator.callbacks.idle()
  // the attempt in progress: it is recorded, then logged, after the receiver answered
  t.match(await attemptsRecorded(app, acme.authorization, task.id, 1), [{ status: 'succeeded', attempts: [{ attempt: 1, response_status: 200 }] }], 'the delivery is recorded as made')
  for (let i = 0; i < 500 && !logs.lines.some((line) => line.msg === 'webhook delivered'); i++) await sleep(10)
  t.match(upstream.simulator.callbacks.attempts, [{ attempt: 1, statusCode: 200 }], 'the gateway answered the upstream\'s callback with 2xx at once')
  const token = new URL(upstream.simulator.callbacks.attempts[0]!.url).pathname.split('/').at(-1)!
  const logText = logs.lines.map((line) => JSON.stringify(line)).join('\n')
  t.notOk(logText.includes(token), 'the callback token is in no log line')
  t.notOk(logText.includes(testWebhookSecret.slice(6)), 'nor the webhook secret')
  t.ok(logs.lines.some((line) => line.msg === 'webhook delivered'), 'the delivery is logged')
})

t.test('a task whose end only the callback announced frees its concurrency slot and is counted', async (t) => {
  const upstream = await startTestSimulator(t, { taskDurationMs: 300, allowPrivateCallbackUrls: true })
  const acme = makeTenant('acme-slots', { webhookSecrets: [testWebhookSecret], maxConcurrentTasks: 1 })
  const receiver = await startReceiver(t)
  const port = await freePort()
  const app = await buildTestApp(t, {
    upstreamUrl: upstream.url,
    upstreamKey: TEST_UPSTREAM_KEY,
    tenants: [acme],
    config: { publicBaseUrl: `http://127.0.0.1:${port}`, webhookAllowedDestinations: loopbackAllowList }
  })
  await app.listen({ host: '127.0.0.1', port })
  const create = async (): Promise<number> => (await request(`http://127.0.0.1:${port}/v1/videos/generations`, {
    method: 'POST',
    headers: { authorization: acme.authorization, 'content-type': 'application/json' },
    body: JSON.stringify({ ...validBody, callback_url: receiver.url })
  })).statusCode
  t.equal(await create(), 200)
  t.equal(await create(), 429, 'the one slot is taken while the task runs')
  // Nobody polls: only the upstream's callback tells the gateway the task ended.
  await receiver.receivedCount(1)
  t.equal(await create(), 200, 'the callback freed the slot')
  const usage = (await app.inject({ url: '/v1/usage', headers: { authorization: acme.authorization } })).json<{ total: { tasks_completed: number } }>()
  t.equal(usage.total.tasks_completed, 1, 'and counted the task completed')
})
