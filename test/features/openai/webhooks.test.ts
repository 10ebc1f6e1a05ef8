import t from 'tap'
import OpenAI from 'openai'
import { buildTestApp, makeTenant, startTestGateway } from '../../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'
import { freePort, loopbackAllowList, startReceiver, testWebhookSecret } from '../../helpers/webhooks.ts'

/** Tenant-level webhook endpoints in OpenAI's format, verified by the official SDK's own `webhooks.unwrap()`. */
t.test('a video.completed event that client.webhooks.unwrap() verifies', async (t) => {
  const upstream = await startTestSimulator(t, { taskDurationMs: 200 })
  const receiver = await startReceiver(t)
  const acme = makeTenant('acme', {
    webhookSecrets: [testWebhookSecret],
    webhookEndpoints: [
      { url: `${receiver.url}/openai`, events: ['video.completed', 'video.failed'], format: 'openai' },
      { url: `${receiver.url}/native`, events: ['video.completed'], format: 'native' },
      { url: `${receiver.url}/failures-only`, events: ['video.failed'], format: 'openai' }
    ]
  })
  const { url } = await startTestGateway(t, {
    upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [acme], config: { webhookAllowedDestinations: loopbackAllowList, taskStatusTtlMs: 50 }
  })
  const openai = new OpenAI({ baseURL: `${url}/v1`, apiKey: acme.key, webhookSecret: testWebhookSecret })
  const created = await openai.videos.create({ prompt: 'A cat playing piano' })
  let video = created
  for (let attempt = 0; attempt < 100 && video.status !== 'completed'; attempt++) video = await openai.videos.retrieve(created.id, { query: { wait: '1' } } as never)
  t.equal(video.status, 'completed')
  // Read again: a second sighting must not send a second event.
  await openai.videos.retrieve(created.id)
  await receiver.receivedCount(2)

  const byPath = new Map(receiver.received.map((hook) => [hook.path, hook]))
  t.same([...byPath.keys()].sort(), ['/hooks/video/native', '/hooks/video/openai'], 'each endpoint that asked for the event, once')
  const hook = byPath.get('/hooks/video/openai')!
  const event = await openai.webhooks.unwrap(hook.body, hook.headers as Record<string, string>)
  t.match(event, { id: /^evt_/, object: 'event', type: 'video.completed', created_at: Number, data: { id: created.id } })
  t.same(Object.keys(event).sort(), ['created_at', 'data', 'id', 'object', 'type'])
  await t.rejects(openai.webhooks.unwrap(hook.body.replace('completed', 'failed'), hook.headers as Record<string, string>), 'a tampered body does not verify')
  const native = JSON.parse(byPath.get('/hooks/video/native')!.body)
  t.match(native, { type: 'video.generation.task.completed', data: { id: created.id, status: 'completed' } })
  t.equal(receiver.received.length, 2)
})

t.test('with PUBLIC_BASE_URL, a video nobody reads still ends in an event: the upstream calls the gateway back', async (t) => {
  const upstream = await startTestSimulator(t, { taskDurationMs: 200, allowPrivateCallbackUrls: true })
  const receiver = await startReceiver(t)
  const acme = makeTenant('acme', {
    webhookSecrets: [testWebhookSecret],
    webhookEndpoints: [{ url: `${receiver.url}/openai`, events: ['video.completed'], format: 'openai' }]
  })
  const port = await freePort()
  const app = await buildTestApp(t, {
    upstreamUrl: upstream.url,
    upstreamKey: TEST_UPSTREAM_KEY,
    tenants: [acme],
    config: { publicBaseUrl: `http://127.0.0.1:${port}`, webhookAllowedDestinations: loopbackAllowList }
  })
  await app.listen({ host: '127.0.0.1', port })
  const openai = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: acme.key, webhookSecret: testWebhookSecret })
  const created = await openai.videos.create({ prompt: 'never polled' })
  await receiver.receivedCount(1)
  const event = await openai.webhooks.unwrap(receiver.received[0]!.body, receiver.received[0]!.headers as Record<string, string>)
  t.match(event, { object: 'event', type: 'video.completed', data: { id: created.id } })
  t.equal(upstream.simulator.calls.task >= 1, true, 'the gateway confirmed the end with a task read')
})
