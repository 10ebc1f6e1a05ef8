import { createHash, randomBytes } from 'node:crypto'
import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { gatewayError, storeUnavailable } from '../../errors/table.ts'
import type { Tenant } from '../tenants/registry.ts'
import type { TaskSnapshot } from '../tasks/snapshot.ts'
import { destinationProblem, type DestinationPolicy, type LookupFunction } from '../../http/destination.ts'
import { createWebhookSender } from './sender.ts'
import { createMemoryWebhookStore, createRedisWebhookStore, type CallbackRegistration, type Delivery } from './store.ts'
import { createWebhookWorker } from './worker.ts'

export interface WebhooksOptions {
  /** PUBLIC_BASE_URL; empty: `callback_url` is refused */
  publicBaseUrl: string
  policy: DestinationPolicy
  maxAttempts: number
  timeoutMs: number
  /** how long a registration waits for its callback, and how long deliveries are kept */
  registrationTtlMs: number
  /** clock of the retry schedule (default Date.now) */
  now?: () => number
  /** DNS lookup of webhook destinations (default dns.lookup) */
  lookup?: LookupFunction
  /** how often the queue is polled for retries that came due (default 1000 ms) */
  pollIntervalMs?: number
  /** on close, how long an attempt under way may take before it is handed back to the queue (default 0: at once) */
  stopGraceMs?: number
}

/** The path the upstream calls back on; the token is the only credential. */
export const callbackPathPrefix = '/callbacks/evolink/'

export interface PreparedCallback {
  /** what the upstream is given instead of the tenant's URL */
  upstreamCallbackUrl: string
  /**
   * Call just before the upstream call: stores the registration without its task,
   * so that a store that is down fails the create (503) before the upstream is
   * called, never after it has accepted (and charged) a task the caller would not see.
   */
  reserve (): Promise<void>
  /** call once the upstream has accepted the task */
  register (task: { taskId: string, upstreamTaskId: string }): Promise<void>
}

export interface Webhooks {
  /**
   * Checks a tenant's `callback_url` (400 `invalid_request` on `callback_url` when refused) and mints the task's callback token.
   * `null`: a callback for the tenant's `webhookEndpoints` only (no per-create relay).
   */
  prepare (tenant: Tenant, url: string | null): Promise<PreparedCallback>
  /** whether the upstream can call this gateway back (PUBLIC_BASE_URL is set) */
  readonly callbacksAvailable: boolean
  /** The upstream called back: 404 for an unknown token, 409 when a task read does not confirm the end; otherwise the delivery is queued. */
  receiveCallback (token: string): Promise<void>
  deliveriesOfTask (tenantId: string, upstreamTaskId: string): Promise<Delivery[]>
  /** Sends a delivery of this tenant again, at once, with the same webhook-id; 404 for anyone else's. */
  redeliver (tenantId: string, deliveryId: string): Promise<Delivery>
}

declare module 'fastify' {
  interface FastifyInstance {
    webhooks: Webhooks
  }
}

/** Only the hash of a token is stored: a leaked store does not let anyone forge callbacks. */
function tokenHash (token: string): string {
  return createHash('sha256').update(token).digest('base64url')
}

const tokenPattern = /^[A-Za-z0-9_-]{43}$/

/** The store failed (Redis down): 503 store_unavailable, so that callers (and the upstream's callback) retry. */
async function fromStore<T> (operation: () => Promise<T>): Promise<T> {
  try {
    return await operation()
  } catch (cause) {
    throw storeUnavailable(cause)
  }
}
const leaseMarginMs = 30_000
/**
 * A registration reserved before the upstream call is completed within that call's
 * timeout, or never (the create failed): it need not outlive the upstream's retries by much.
 */
const reservedRegistrationTtlMs = 15 * 60_000

type RegisteredCallback = CallbackRegistration & { taskId: string, upstreamTaskId: string }
function isRegistered (registration: CallbackRegistration): registration is RegisteredCallback {
  return registration.taskId !== null && registration.upstreamTaskId !== null
}

function eventTypeOf (snapshot: TaskSnapshot): string {
  return `video.generation.task.${String(snapshot.task.status)}`
}

/** A delivery queued to go at once; its id is the `webhook-id` of every attempt. */
function newDelivery (event: Pick<Delivery, 'tenantId' | 'taskId' | 'upstreamTaskId' | 'url' | 'eventType' | 'payload'> & { at: number }): Delivery {
  const { at, ...fields } = event
  return {
    id: 'msg_' + randomBytes(16).toString('base64url'),
    ...fields,
    status: 'pending',
    attemptsInRound: 0,
    attempts: [],
    nextAttemptAt: at,
    failureReason: null,
    createdAt: at,
    updatedAt: at
  }
}

async function webhooksPlugin (fastify: FastifyInstance, options: WebhooksOptions): Promise<void> {
  const now = options.now ?? Date.now
  const store = fastify.redis === null
    ? createMemoryWebhookStore({ now })
    : createRedisWebhookStore({ redis: fastify.redis, keyPrefix: fastify.redisKeys.webhook })
  const sender = createWebhookSender({ policy: options.policy, timeoutMs: options.timeoutMs, lookup: options.lookup })
  const worker = createWebhookWorker({
    store,
    now,
    maxAttempts: options.maxAttempts,
    leaseMs: options.timeoutMs + leaseMarginMs,
    ttlMs: options.registrationTtlMs,
    pollIntervalMs: options.pollIntervalMs ?? 1000,
    log: fastify.log,
    // SIGTERM's drain: this instance still takes callbacks and queues their deliveries; the others send them.
    claimUntil: fastify.shutdownDrain.signal,
    async attempt (delivery, signal) {
      // The tenants as they are now, at delivery time: a rotated secret (a reload) applies to pending retries too.
      const secrets = fastify.tenantRegistry.current.byId.get(delivery.tenantId)?.webhookSecrets ?? []
      // The tenant was removed or lost its secrets: nothing can be signed.
      if (secrets.length === 0) return { statusCode: null, error: 'the tenant has no webhook secret' }
      return await sender.send({ id: delivery.id, url: delivery.url, payload: delivery.payload, secrets }, signal)
    }
  })
  const publicBaseUrl = options.publicBaseUrl.replace(/\/+$/, '')

  /** A task ended (confirmed by a task read): its delivery is queued once, and the tasks feature told once (across instances too). */
  async function taskFinished (registration: RegisteredCallback & { url: string }, snapshot: TaskSnapshot, hash: string): Promise<void> {
    const payload = JSON.stringify({
      type: eventTypeOf(snapshot),
      timestamp: new Date(now()).toISOString(),
      data: { ...snapshot.task, id: registration.taskId }
    })
    const at = now()
    const { created } = await store.createDelivery(hash, newDelivery({
      tenantId: registration.tenantId,
      taskId: registration.taskId,
      upstreamTaskId: registration.upstreamTaskId,
      url: registration.url,
      eventType: eventTypeOf(snapshot),
      payload,
      at
    }), options.registrationTtlMs)
    if (!created) return
    worker.wake()
    // The delivery is queued already; observe() never throws, so a listener cannot make the upstream call back again.
    await fastify.taskStatus.observe({ tenantId: registration.tenantId, upstreamTaskId: registration.upstreamTaskId, snapshot })
  }

  // Tenant-level endpoints (tenants file `webhookEndpoints`): every task of the tenant that ends is an event,
  // queued once per endpoint (across instances too), on the same queue, retries and SSRF guard as callback_url's.
  fastify.taskStatus.onFinished(async ({ tenantId, upstreamTaskId, snapshot }) => {
    // The current tenants (a reload may have added or removed endpoints).
    const endpoints = fastify.tenantRegistry.current.byId.get(tenantId)?.webhookEndpoints ?? []
    if (endpoints.length === 0) return
    const type = snapshot.task.status === 'completed' ? 'video.completed' : 'video.failed'
    const taskId = fastify.taskIds.scope(tenantId, upstreamTaskId)
    const at = now()
    for (const [index, endpoint] of endpoints.entries()) {
      if (!endpoint.events.includes(type)) continue
      const payload = endpoint.format === 'openai'
        ? JSON.stringify({ id: 'evt_' + randomBytes(16).toString('base64url'), object: 'event', type, created_at: Math.floor(at / 1000), data: { id: taskId } })
        : JSON.stringify({ type: eventTypeOf(snapshot), timestamp: new Date(at).toISOString(), data: { ...snapshot.task, id: taskId } })
      const once = createHash('sha256').update(`endpoint\n${tenantId}\n${upstreamTaskId}\n${index}\n${endpoint.url}`).digest('hex')
      const { created } = await fromStore(async () => await store.createDelivery(once, newDelivery({
        tenantId,
        taskId,
        upstreamTaskId,
        url: endpoint.url,
        eventType: endpoint.format === 'openai' ? type : eventTypeOf(snapshot),
        payload,
        at
      }), options.registrationTtlMs))
      if (created) worker.wake()
    }
  })

  fastify.decorate('webhooks', {
    async prepare (tenant, url) {
      if (publicBaseUrl === '') {
        throw gatewayError('invalid_request', {
          args: ['callback_url is not available: this gateway has no PUBLIC_BASE_URL for the provider to call back. Poll GET /v1/tasks/{task_id} instead.'],
          param: 'callback_url'
        })
      }
      if (tenant.webhookSecrets.length === 0) {
        throw gatewayError('invalid_request', { args: ['callback_url is not available: no webhook signing secret is configured for this tenant.'], param: 'callback_url' })
      }
      const problem = url === null ? null : await destinationProblem(url, { policy: options.policy, lookup: options.lookup })
      if (problem !== null) throw gatewayError('invalid_request', { args: [`callback_url ${problem}.`], param: 'callback_url' })
      const token = randomBytes(32).toString('base64url')
      const save = async (task: { taskId: string, upstreamTaskId: string } | null, ttlMs: number): Promise<void> => {
        const registration = { tenantId: tenant.id, taskId: task?.taskId ?? null, upstreamTaskId: task?.upstreamTaskId ?? null, url, createdAt: now() }
        await fromStore(async () => { await store.saveRegistration(tokenHash(token), registration, ttlMs) })
      }
      return {
        upstreamCallbackUrl: publicBaseUrl + callbackPathPrefix + token,
        reserve: async () => { await save(null, reservedRegistrationTtlMs) },
        register: async (task) => { await save(task, options.registrationTtlMs) }
      }
    },
    async receiveCallback (token) {
      const hash = tokenPattern.test(token) ? tokenHash(token) : null
      const registration = hash === null ? null : await fromStore(async () => await store.registration(hash))
      if (hash === null || registration === null) throw gatewayError('not_found', { args: ['Unknown callback.'] })
      // Called back before the create's answer was registered (a task that failed at once): the upstream retries.
      if (!isRegistered(registration)) throw gatewayError('callback_not_registered')
      const snapshot = await fastify.taskStatus.confirm(registration.upstreamTaskId)
      if (!snapshot.terminal) throw gatewayError('callback_task_not_finished')
      // Endpoints only: the sighting is the whole point (the endpoints' listener queues their events, once).
      const { url } = registration
      if (url === null) return await fastify.taskStatus.observe({ tenantId: registration.tenantId, upstreamTaskId: registration.upstreamTaskId, snapshot })
      await fromStore(async () => { await taskFinished({ ...registration, url }, snapshot, hash) })
    },
    async deliveriesOfTask (tenantId, upstreamTaskId) {
      const deliveries = await fromStore(async () => await store.deliveriesOfTask(tenantId, upstreamTaskId))
      return deliveries.sort((a, b) => a.createdAt - b.createdAt)
    },
    async redeliver (tenantId, deliveryId) {
      const delivery = await fromStore(async () => await store.delivery(deliveryId))
      if (delivery === null || delivery.tenantId !== tenantId) throw gatewayError('not_found', { args: ['Delivery not found.'], param: 'delivery_id' })
      const at = now()
      const again: Delivery = { ...delivery, status: 'pending', attemptsInRound: 0, nextAttemptAt: at, failureReason: null, updatedAt: at }
      await fromStore(async () => { await store.save(again, options.registrationTtlMs) })
      worker.wake()
      return again
    },
    callbacksAvailable: publicBaseUrl !== ''
  } satisfies Webhooks)

  fastify.addHook('onReady', async () => { worker.start() })
  // preClose: before Redis is closed (onClose), so attempts in flight can finish or be handed back.
  fastify.addHook('preClose', async () => {
    await worker.stop({ graceMs: options.stopGraceMs ?? 0 })
    await sender.close()
  })
}

export default fp(webhooksPlugin, { name: 'webhooks', fastify: '5.x', dependencies: ['redis-store', 'task-status', 'task-ids', 'tenant-registry', 'graceful-shutdown'] })
