import t, { type Test } from 'tap'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import type { FastifyInstance } from 'fastify'
import type { Config } from '../../../src/config.ts'
import { buildTestApp, logCollector, makeTenant, validBody, type TestTenant } from '../../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'
import { redisForTests } from '../../helpers/redis.ts'
import { attemptsRecorded, loopbackAllowList, startReceiver, testWebhookPollMs, testWebhookSecret } from '../../helpers/webhooks.ts'

/**
 * Issue 18 §2: once SIGTERM starts the drain phase (server.ts calls
 * shutdownDrain.begin(), as these tests do), an instance still answers
 * requests, and so still queues webhook deliveries and archive jobs, but its
 * queue workers claim none of them: another instance on the same Redis does,
 * while the draining one is on its way out.
 */

const redis = await redisForTests()
const skip = 'skip' in redis ? redis.skip : false

interface Instance { app: FastifyInstance, logs: Array<Record<string, unknown>> }

/** Two gateways (A, B) on one Redis key prefix of the test's own, each with its log. */
async function twoInstances (t: Test, url: string, config: Partial<Config>, upstreamUrl: string, tenant: TestTenant): Promise<[Instance, Instance]> {
  const keyPrefix = `vg-test:drain:${process.pid}:${randomBytes(6).toString('hex')}:`
  t.teardown(async () => {
    const client = new Redis(url)
    const keys = await client.keys(`${keyPrefix}*`)
    if (keys.length > 0) await client.del(...keys)
    client.disconnect()
  })
  const start = async (): Promise<Instance> => {
    const logs = logCollector()
    const app = await buildTestApp(t, {
      upstreamUrl,
      upstreamKey: TEST_UPSTREAM_KEY,
      tenants: [tenant],
      logger: { level: 'info', stream: logs.stream },
      config: { redisUrl: url, redisKeyPrefix: keyPrefix, ...config }
    })
    await app.ready()
    return { app, logs: logs.lines }
  }
  return [await start(), await start()]
}

/** Waits until one of the instances has logged `msg` (a job's log line comes a moment after what it recorded); answers how many lines each has. */
async function loggedBy (instances: Instance[], msg: string): Promise<number[]> {
  const counts = (): number[] => instances.map((instance) => instance.logs.filter((line) => line.msg === msg).length)
  for (let i = 0; i < 500 && counts().every((count) => count === 0); i++) await sleep(10)
  return counts()
}

/** Starts A's drain as SIGTERM does; A says so on /readyz and in its log. */
async function drain (t: Test, instance: Instance, queue: string): Promise<void> {
  instance.app.shutdownDrain.begin()
  t.equal((await instance.app.inject({ url: '/readyz' })).statusCode, 503, 'A is draining: /readyz 503')
  t.ok(instance.logs.some((line) => line.msg === `draining for shutdown: the ${queue} queue is left to other instances`), `A logged that it leaves the ${queue} queue`)
}

t.test('a draining instance takes the upstream\'s callback and queues the delivery; another instance sends it', { skip }, async (t) => {
  if ('skip' in redis) return
  const upstream = await startTestSimulator(t, { taskDurationMs: 0, allowPrivateCallbackUrls: true })
  const acme = makeTenant('acme', { webhookSecrets: [testWebhookSecret] })
  const receiver = await startReceiver(t)
  const [a, b] = await twoInstances(t, redis.url, { publicBaseUrl: 'http://127.0.0.1:9', webhookAllowedDestinations: loopbackAllowList, webhookPollIntervalMs: testWebhookPollMs }, upstream.url, acme)
  await drain(t, a, 'webhook')

  const created = await a.app.inject({ method: 'POST', url: '/v1/videos/generations', headers: { authorization: acme.authorization }, payload: { ...validBody, callback_url: receiver.url } })
  t.equal(created.statusCode, 200, 'A still serves creates during the drain')
  const taskId = created.json().id as string
  const callbackPath = new URL((upstream.simulator.calls.log.findLast((call) => call.route === 'create')?.body as { callback_url: string }).callback_url).pathname
  const callback = await a.app.inject({ method: 'POST', url: callbackPath, payload: {} })
  t.equal(callback.statusCode, 200, 'and the upstream\'s callback')

  const deliveries = await attemptsRecorded(a.app, acme.authorization, taskId, 1)
  t.match(deliveries, [{ status: 'succeeded', attempts: [{ attempt: 1, response_status: 200 }] }], 'delivered once')
  t.equal(receiver.received.length, 1)
  await loggedBy([a, b], 'webhook delivered')
  const delivered = (instance: Instance): unknown[] => instance.logs.filter((line) => line.msg === 'webhook delivered').map((line) => line.webhook_id)
  t.same(delivered(a), [], 'not by the draining instance')
  t.same(delivered(b), [deliveries[0]!.id], 'by the other one')
})

t.test('a draining instance queues the archive job of a task it reads; another instance archives it', { skip }, async (t) => {
  if ('skip' in redis) return
  const upstream = await startTestSimulator(t, { taskDurationMs: 0 })
  const dir = await mkdtemp(join(tmpdir(), 'vg-archive-drain-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const acme = makeTenant('acme')
  const [a, b] = await twoInstances(t, redis.url, { archiveDir: dir, archiveAllowedSources: '127.0.0.0/8', archivePollIntervalMs: 20 }, upstream.url, acme)
  await drain(t, a, 'archive')

  const created = await a.app.inject({ method: 'POST', url: '/v1/videos/generations', headers: { authorization: acme.authorization }, payload: validBody })
  t.equal(created.statusCode, 200, 'A still serves creates during the drain')
  const id = created.json().id as string
  const statusVia = async (instance: Instance): Promise<string | undefined> =>
    (await instance.app.inject({ url: `/v1/tasks/${id}`, headers: { authorization: acme.authorization } })).json().archive?.status
  t.equal(await statusVia(a), 'pending', 'A\'s read queued the archive job')
  let status: string | undefined
  for (let i = 0; i < 500 && status !== 'archived'; i++) {
    status = await statusVia(a)
    if (status !== 'archived') await sleep(20)
  }
  t.equal(status, 'archived')
  t.equal(upstream.simulator.calls.file, 1, 'one download')
  const [byA, byB] = await loggedBy([a, b], 'task archived')
  t.equal(byA, 0, 'not by the draining instance')
  t.equal(byB, 1, 'by the other one')
})
