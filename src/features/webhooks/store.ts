import type { Redis } from 'ioredis'
import { LRUCache } from 'lru-cache'
import { createMemoryDueQueue, createRedisDueQueue, type DueQueue } from '../store/due-queue.ts'

/** What the gateway remembers of a task created with `callback_url`, under the hash of its callback token. */
export interface CallbackRegistration {
  tenantId: string
  /** the tenant-scoped id; null until the upstream has accepted the create */
  taskId: string | null
  /** null until the upstream has accepted the create */
  upstreamTaskId: string | null
  /**
   * the tenant's URL (never sent to the upstream); null: no per-create relay,
   * the callback only tells the gateway that the task ended (for the tenant's `webhookEndpoints`)
   */
  url: string | null
  createdAt: number
}

export type DeliveryStatus = 'pending' | 'succeeded' | 'failed'

export interface DeliveryAttempt {
  /** 1-based, counting every attempt of this delivery (redeliveries included) */
  attempt: number
  at: number
  /** the receiver's status, or null when none came */
  statusCode: number | null
  error: string | null
  durationMs: number
}

/** One event to one tenant URL; its id is the `webhook-id`, the same on every attempt. */
export interface Delivery {
  id: string
  tenantId: string
  taskId: string
  upstreamTaskId: string
  url: string
  eventType: string
  /** the exact body that is signed and sent */
  payload: string
  status: DeliveryStatus
  /** attempts since the delivery (or its last redelivery) began: drives the retry schedule */
  attemptsInRound: number
  /** most recent last, at most `maxHistory` */
  attempts: DeliveryAttempt[]
  nextAttemptAt: number | null
  failureReason: string | null
  createdAt: number
  updatedAt: number
}

export const maxHistory = 50

/**
 * Registrations, deliveries and the queue of due attempts. In Redis every
 * instance shares them and a restart loses nothing; in memory they live and
 * die with the process.
 */
export interface WebhookStore {
  saveRegistration (tokenHash: string, registration: CallbackRegistration, ttlMs: number): Promise<void>
  registration (tokenHash: string): Promise<CallbackRegistration | null>
  /**
   * Stores the delivery of a registration unless it already has one (the
   * upstream may call back several times): `created` false returns the existing one.
   */
  createDelivery (tokenHash: string, delivery: Delivery, ttlMs: number): Promise<{ created: boolean, delivery: Delivery }>
  delivery (id: string): Promise<Delivery | null>
  deliveriesOfTask (tenantId: string, upstreamTaskId: string): Promise<Delivery[]>
  /** stores the record and (un)queues it by `nextAttemptAt` */
  save (delivery: Delivery, ttlMs: number): Promise<void>
  /**
   * Ids of deliveries due at `nowMs` (at most `limit`), each leased until
   * `nowMs + leaseMs` (features/store/due-queue.ts): if the claimer dies
   * mid-attempt the lease runs out and the attempt is made again.
   */
  claimDue (nowMs: number, leaseMs: number, limit: number): Promise<string[]>
  /** hands a lease back to the queue, if it is still the claimer's (DueQueue.release) */
  release: DueQueue['release']
  /** takes an id out of the queue (its delivery is gone) */
  unqueue (id: string): Promise<void>
  /** the earliest due time queued, for the worker's next wake-up (null: none) */
  nextDueAt (): Promise<number | null>
}

export function createMemoryWebhookStore (options: { now: () => number, maxEntries?: number }): WebhookStore {
  // lru-cache allocates for `max` up front (four caches here): sized like the other memory-mode
  // caches; past it the oldest registrations go first (memory mode is for one small instance).
  const max = options.maxEntries ?? 10_000
  const perf = { now: options.now }
  const registrations = new LRUCache<string, CallbackRegistration>({ max, perf, ttlResolution: 0 })
  const deliveries = new LRUCache<string, Delivery>({ max, perf, ttlResolution: 0 })
  const byRegistration = new LRUCache<string, string>({ max, perf, ttlResolution: 0 })
  const byTask = new LRUCache<string, Set<string>>({ max, perf, ttlResolution: 0 })
  const due = createMemoryDueQueue()
  const copy = (delivery: Delivery): Delivery => structuredClone(delivery)

  async function store (delivery: Delivery, ttlMs: number): Promise<void> {
    deliveries.set(delivery.id, copy(delivery), { ttl: ttlMs })
    const taskKey = `${delivery.tenantId}\n${delivery.upstreamTaskId}`
    const ids = byTask.get(taskKey) ?? new Set()
    ids.add(delivery.id)
    byTask.set(taskKey, ids, { ttl: ttlMs })
    if (delivery.nextAttemptAt === null) await due.remove(delivery.id)
    else await due.schedule(delivery.id, delivery.nextAttemptAt)
  }

  return {
    async saveRegistration (tokenHash, registration, ttlMs) { registrations.set(tokenHash, { ...registration }, { ttl: ttlMs }) },
    async registration (tokenHash) { return registrations.get(tokenHash) ?? null },
    async createDelivery (tokenHash, delivery, ttlMs) {
      const existing = byRegistration.get(tokenHash)
      const stored = existing === undefined ? undefined : deliveries.get(existing)
      if (stored !== undefined) return { created: false, delivery: copy(stored) }
      byRegistration.set(tokenHash, delivery.id, { ttl: ttlMs })
      await store(delivery, ttlMs)
      return { created: true, delivery: copy(delivery) }
    },
    async delivery (id) {
      const stored = deliveries.get(id)
      return stored === undefined ? null : copy(stored)
    },
    async deliveriesOfTask (tenantId, upstreamTaskId) {
      const ids = byTask.get(`${tenantId}\n${upstreamTaskId}`) ?? new Set<string>()
      return [...ids].map((id) => deliveries.get(id)).filter((delivery) => delivery !== undefined).map(copy)
    },
    async save (delivery, ttlMs) { await store(delivery, ttlMs) },
    claimDue: due.claimDue,
    release: due.release,
    unqueue: due.remove,
    nextDueAt: due.nextDueAt
  }
}

/** Redis: JSON records with a TTL, a set of delivery ids per task, and one sorted set of due times. */
export function createRedisWebhookStore (options: { redis: Redis, keyPrefix: string }): WebhookStore {
  const { redis } = options
  const prefix = options.keyPrefix
  const dueKey = `${prefix}due`
  // Records and their due times are written in one MULTI (store below); claims go through the queue.
  const due = createRedisDueQueue({ redis, key: dueKey })
  const taskKey = (tenantId: string, upstreamTaskId: string): string => `${prefix}task:${tenantId}:${upstreamTaskId}`
  const parse = <T>(text: string | null): T | null => {
    if (text === null) return null
    try {
      return JSON.parse(text) as T
    } catch {
      return null
    }
  }

  async function store (delivery: Delivery, ttlMs: number): Promise<void> {
    const multi = redis.multi()
      .set(`${prefix}delivery:${delivery.id}`, JSON.stringify(delivery), 'PX', ttlMs)
      .sadd(taskKey(delivery.tenantId, delivery.upstreamTaskId), delivery.id)
      .pexpire(taskKey(delivery.tenantId, delivery.upstreamTaskId), ttlMs)
    if (delivery.nextAttemptAt === null) multi.zrem(dueKey, delivery.id)
    else multi.zadd(dueKey, delivery.nextAttemptAt, delivery.id)
    const results = await multi.exec()
    const failed = results?.find(([error]) => error !== null)
    if (results === null || failed !== undefined) throw new Error('webhook store: saving a delivery failed', { cause: failed?.[0] })
  }

  async function read (id: string): Promise<Delivery | null> {
    return parse<Delivery>(await redis.get(`${prefix}delivery:${id}`))
  }

  return {
    async saveRegistration (tokenHash, registration, ttlMs) {
      await redis.set(`${prefix}registration:${tokenHash}`, JSON.stringify(registration), 'PX', ttlMs)
    },
    async registration (tokenHash) {
      return parse<CallbackRegistration>(await redis.get(`${prefix}registration:${tokenHash}`))
    },
    async createDelivery (tokenHash, delivery, ttlMs) {
      const onceKey = `${prefix}once:${tokenHash}`
      const won = await redis.set(onceKey, delivery.id, 'PX', ttlMs, 'NX')
      if (won === null) {
        const existing = await redis.get(onceKey)
        const stored = existing === null ? null : await read(existing)
        if (stored !== null) return { created: false, delivery: stored }
        await redis.set(onceKey, delivery.id, 'PX', ttlMs)
      }
      await store(delivery, ttlMs)
      return { created: true, delivery }
    },
    delivery: read,
    async deliveriesOfTask (tenantId, upstreamTaskId) {
      const ids = await redis.smembers(taskKey(tenantId, upstreamTaskId))
      const found = await Promise.all(ids.map(read))
      return found.filter((delivery) => delivery !== null)
    },
    save: store,
    claimDue: due.claimDue,
    release: due.release,
    unqueue: due.remove,
    nextDueAt: due.nextDueAt
  }
}
