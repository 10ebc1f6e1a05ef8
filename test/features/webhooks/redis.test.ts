import t, { type Test } from 'tap'
import { randomBytes } from 'node:crypto'
import { Redis } from 'ioredis'
import { Webhook } from 'standardwebhooks'
import type { Config } from '../../../src/config.ts'
import { buildTestApp, makeTenant, validBody } from '../../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'
import { redisForTests } from '../../helpers/redis.ts'
import { attemptsRecorded, loopbackAllowList, manualClock, startReceiver, testWebhookPollMs, testWebhookSecret, webhookQuietPeriod } from '../../helpers/webhooks.ts'
import { createRedisWebhookStore, type Delivery } from '../../../src/features/webhooks/store.ts'
import { redisKeyMap } from '../../../src/features/store/keys.ts'

const redis = await redisForTests()
const skip = 'skip' in redis ? redis.skip : false

/** Every test gets its own key prefix: the Redis is shared with other tests and other agents. */
function uniquePrefix (): string {
  return `vg-test:webhook:${process.pid}:${randomBytes(6).toString('hex')}:`
}

async function dropPrefix (url: string, prefix: string): Promise<void> {
  const client = new Redis(url)
  try {
    const keys = await client.keys(`${prefix}*`)
    if (keys.length > 0) await client.del(...keys)
  } finally {
    client.disconnect()
  }
}

/**
 * A relay on the real Redis under a test's own key prefix: a simulator and
 * gateways on one moved clock (the workers poll every few ms, and find a retry
 * due once the clock says so), a tenant, a receiver.
 */
async function relayOnRedis (t: Test, url: string, extraConfig: Partial<Config> = {}) {
  const keyPrefix = uniquePrefix()
  t.teardown(() => dropPrefix(url, keyPrefix))
  const clock = manualClock()
  const upstream = await startTestSimulator(t, { now: clock.now, taskDurationMs: 10_000, allowPrivateCallbackUrls: true })
  const acme = makeTenant('acme', { webhookSecrets: [testWebhookSecret] })
  const receiver = await startReceiver(t)
  const options = {
    upstreamUrl: upstream.url,
    upstreamKey: TEST_UPSTREAM_KEY,
    tenants: [acme],
    config: { redisUrl: url, redisKeyPrefix: keyPrefix, webhookPollIntervalMs: testWebhookPollMs, publicBaseUrl: 'http://127.0.0.1:9', webhookAllowedDestinations: loopbackAllowList, ...extraConfig },
    seams: { clock: clock.now }
  }
  return { clock, upstream, acme, receiver, options }
}

t.test('Redis mode: a gateway restart mid-retry loses nothing (registration, delivery, its schedule, its webhook-id)', { skip }, async (t) => {
  if ('skip' in redis) return
  const { clock, upstream, acme, receiver, options } = await relayOnRedis(t, redis.url)

  // First instance: the task is created and then the instance goes away before the upstream calls back.
  const first = await buildTestApp(t, options)
  const created = await first.inject({ method: 'POST', url: '/v1/videos/generations', headers: { authorization: acme.authorization }, payload: { ...validBody, callback_url: receiver.url } })
  t.equal(created.statusCode, 200, created.body)
  const taskId = created.json().id
  const callbackPath = new URL((upstream.simulator.calls.log.at(-1)?.body as { callback_url: string }).callback_url).pathname
  await first.close()

  // Second instance: the callback is known, the first attempt fails, and this instance goes away too.
  const second = await buildTestApp(t, options)
  clock.advance(11_000)
  t.equal((await second.inject({ method: 'POST', url: callbackPath, payload: {} })).statusCode, 200, 'the registration survived the restart')
  receiver.answers.push({ status: 503 })
  await attemptsRecorded(second, acme.authorization, taskId, 1)
  t.equal(receiver.received.length, 1)
  await second.close()

  // Third instance: the retry comes due on the schedule and succeeds, with the same webhook-id.
  const third = await buildTestApp(t, options)
  await third.ready()
  clock.advance(4_999)
  await webhookQuietPeriod()
  t.equal(receiver.received.length, 1, 'not before its time')
  clock.advance(1)
  await attemptsRecorded(third, acme.authorization, taskId, 2)
  t.equal(receiver.received.length, 2, 'the retry after the restart')
  t.equal(receiver.received[1]!.headers['webhook-id'], receiver.received[0]!.headers['webhook-id'])
  const verified = new Webhook(testWebhookSecret).verify(receiver.received[1]!.body, receiver.received[1]!.headers as Record<string, string>) as { data: { id: string } }
  t.equal(verified.data.id, taskId)
  const listed = await third.inject({ method: 'GET', url: `/v1/webhooks/deliveries?task_id=${taskId}`, headers: { authorization: acme.authorization } })
  t.match(listed.json().data, [{ status: 'succeeded', attempts: [{ attempt: 1, response_status: 503 }, { attempt: 2, response_status: 200 }] }])
  t.equal(listed.json().data.length, 1)
})

/** The score of a delivery in the shared due queue: its due time, or the end of its lease (null: not queued). */
async function dueScore (url: string, keyPrefix: string, deliveryId: string): Promise<number | null> {
  const client = new Redis(url)
  try {
    const score = await client.zscore(`${redisKeyMap(keyPrefix).webhook}due`, deliveryId)
    return score === null ? null : Number(score)
  } finally {
    client.disconnect()
  }
}

t.test('Redis mode: an instance that closes mid-attempt hands the attempt back, and the next one makes it at once, not after the lease', { skip }, async (t) => {
  if ('skip' in redis) return
  const { clock, upstream, acme, receiver, options } = await relayOnRedis(t, redis.url, { webhookTimeoutMs: 15_000, shutdownJobGraceMs: 0 })
  const first = await buildTestApp(t, options)
  const created = await first.inject({ method: 'POST', url: '/v1/videos/generations', headers: { authorization: acme.authorization }, payload: { ...validBody, callback_url: receiver.url } })
  const taskId = created.json().id
  const callbackPath = new URL((upstream.simulator.calls.log.at(-1)?.body as { callback_url: string }).callback_url).pathname
  clock.advance(11_000)
  receiver.answers.push({ status: 0, hang: true })
  t.equal((await first.inject({ method: 'POST', url: callbackPath, payload: {} })).statusCode, 200)
  const [{ id: deliveryId }] = (await first.inject({ method: 'GET', url: `/v1/webhooks/deliveries?task_id=${taskId}`, headers: { authorization: acme.authorization } })).json().data
  // The callback queued the delivery and woke the worker: the attempt is under way (the receiver hangs).
  await receiver.receivedCount(1)
  t.equal(await dueScore(redis.url, options.config.redisKeyPrefix, deliveryId), clock.now() + 15_000 + 30_000, 'leased to the first instance')
  await first.close()
  t.equal(receiver.received.length, 1, 'the attempt was under way when the instance closed')
  t.equal(await dueScore(redis.url, options.config.redisKeyPrefix, deliveryId), clock.now(), 'handed back: due now, not at the end of the lease')

  // The clock does not move: the next instance does not wait for the lease.
  const second = await buildTestApp(t, options)
  const listed = await second.inject({ method: 'GET', url: `/v1/webhooks/deliveries?task_id=${taskId}`, headers: { authorization: acme.authorization } })
  t.match(listed.json().data, [{ status: 'pending', attempts: [] }], 'the interrupted attempt is not recorded as made')
  await attemptsRecorded(second, acme.authorization, taskId, 1)
  t.equal(receiver.received.length, 2, 'made again by the next instance at once')
  t.equal(receiver.received[1]!.headers['webhook-id'], receiver.received[0]!.headers['webhook-id'])
  const after = await second.inject({ method: 'GET', url: `/v1/webhooks/deliveries?task_id=${taskId}`, headers: { authorization: acme.authorization } })
  t.match(after.json().data, [{ status: 'succeeded', attempts: [{ attempt: 1, response_status: 200 }] }])
  t.equal(await dueScore(redis.url, options.config.redisKeyPrefix, deliveryId), null, 'done: out of the queue')
})

t.test('Redis mode: an instance that closes mid-attempt lets a slow attempt finish within SHUTDOWN_JOB_GRACE_MS and records it', { skip }, async (t) => {
  if ('skip' in redis) return
  const { clock, upstream, acme, receiver, options } = await relayOnRedis(t, redis.url, { webhookTimeoutMs: 15_000, shutdownJobGraceMs: 30_000 })
  const first = await buildTestApp(t, options)
  const created = await first.inject({ method: 'POST', url: '/v1/videos/generations', headers: { authorization: acme.authorization }, payload: { ...validBody, callback_url: receiver.url } })
  const taskId = created.json().id
  const callbackPath = new URL((upstream.simulator.calls.log.at(-1)?.body as { callback_url: string }).callback_url).pathname
  clock.advance(11_000)
  receiver.answers.push({ status: 200, delayMs: 300 })
  t.equal((await first.inject({ method: 'POST', url: callbackPath, payload: {} })).statusCode, 200)
  // The attempt under way (woken by the callback) when the instance closes.
  await receiver.receivedCount(1)
  await first.close()
  const [delivery] = (await (await buildTestApp(t, options)).inject({ method: 'GET', url: `/v1/webhooks/deliveries?task_id=${taskId}`, headers: { authorization: acme.authorization } })).json().data
  t.match(delivery, { status: 'succeeded', attempts: [{ attempt: 1, response_status: 200 }] }, 'the attempt finished during the close and was recorded')
  t.equal(await dueScore(redis.url, options.config.redisKeyPrefix, delivery.id), null, 'nothing handed back: out of the queue')
  t.equal(receiver.received.length, 1)
})

t.test('Redis store: concurrent claims never hand out one attempt twice; a lease that runs out is claimed again', { skip }, async (t) => {
  if ('skip' in redis) return
  const keyPrefix = uniquePrefix()
  t.teardown(() => dropPrefix(redis.url, keyPrefix))
  const clients = [new Redis(redis.url), new Redis(redis.url)]
  t.teardown(() => { for (const client of clients) client.disconnect() })
  const [one, two] = clients.map((client) => createRedisWebhookStore({ redis: client, keyPrefix: redisKeyMap(keyPrefix).webhook }))
  const now = 1_000_000
  const delivery = (id: string): Delivery => ({
    id,
    tenantId: 'acme',
    taskId: 'scoped',
    upstreamTaskId: 'task-unified-1-aaaaaaaa',
    url: 'https://hooks.example.com',
    eventType: 'video.generation.task.completed',
    payload: '{}',
    status: 'pending',
    attemptsInRound: 0,
    attempts: [],
    nextAttemptAt: now,
    failureReason: null,
    createdAt: now,
    updatedAt: now
  })
  const ids = Array.from({ length: 40 }, (_, i) => `msg_${i}`)
  for (const id of ids) await one!.save(delivery(id), 60_000)

  const [a, b] = await Promise.all([one!.claimDue(now, 10_000, 25), two!.claimDue(now, 10_000, 25)])
  t.equal(a.length + b.length, 40, 'all claimed')
  t.same(new Set([...a, ...b]).size, 40, 'none twice')
  t.same(await one!.claimDue(now + 9_999, 10_000, 100), [], 'leased')
  t.equal((await two!.claimDue(now + 10_000, 10_000, 100)).length, 40, 'claimable again once the lease is over (a crashed instance)')
  t.same((await one!.deliveriesOfTask('acme', 'task-unified-1-aaaaaaaa')).map((found) => found.id).sort(), [...ids].sort())
})
