import { hash } from 'node:crypto'
import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify'
import { gatewayError, storeUnavailable } from '../../errors/table.ts'
import { requestFingerprint } from './fingerprint.ts'
import { createMemoryIdempotencyStore, type IdempotencyClaim, type StoredResponse } from './store/memory.ts'
import { createRedisIdempotencyStore } from './store/redis.ts'
import { tenantOf } from '../tenants/auth.ts'

export interface IdempotencyOptions {
  /** how long an answer is replayed (IDEMPOTENCY_TTL_MS) */
  ttlMs: number
  /** how long an in-flight claim lasts if its request never finishes (a crashed instance) */
  lockTtlMs: number
  /** memory mode: most keys kept (IDEMPOTENCY_MEMORY_MAX_KEYS) */
  memoryMaxKeys: number
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** the route honours `Idempotency-Key` (its body is the request's identity) */
    idempotency?: boolean
  }
  interface FastifyRequest {
    /** the key this request holds until its answer is stored or the key released */
    idempotencyClaim: IdempotencyClaim | null
  }
}

export const idempotencyKeyHeader = 'idempotency-key'
const maxKeyLength = 255
/** what a caller waits before retrying a key in flight: a create takes about a second */
const inFlightRetryAfter = '1'

/**
 * Whether an answer is final for its key. Stored: what the upstream decided
 * (its 2xx, and the 4xx that are the caller's fault: retrying the same body
 * would get the same). Released, so that a retry can go through: anything
 * decided before the upstream was asked (validation, permissions: nothing was
 * spent), upstream rate limiting, and the gateway's or upstream's transient
 * failures (5xx, timeouts, unreachable, breaker open).
 */
function isFinal (request: FastifyRequest, reply: FastifyReply, payload: unknown): payload is string {
  const status = reply.statusCode
  return request.upstreamStatus !== null && status < 500 && status !== 429 && typeof payload === 'string'
}

/** A replayed error carries the request id of the replay, as every error body does (the original is in the log). */
function replayBody (stored: StoredResponse, requestId: string): string {
  if (stored.statusCode < 400) return stored.body
  const body = JSON.parse(stored.body) as { error?: { request_id?: string } }
  if (body.error !== undefined) body.error.request_id = requestId
  return JSON.stringify(body)
}

type RouteHook = (...args: never[]) => unknown

function append (existing: RouteHook | RouteHook[] | undefined, hook: RouteHook): RouteHook[] {
  if (existing === undefined) return [hook]
  return Array.isArray(existing) ? [...existing, hook] : [existing, hook]
}

/**
 * Idempotency-Key (IETF draft "The Idempotency-Key HTTP Header Field", Stripe's
 * practice) on the routes whose config says `idempotency: true`: a retried
 * create with the same key and body gets the first answer again, with
 * `Idempotent-Replayed: true`, and costs no second upstream call. Keys are per
 * tenant. With Redis the claim is atomic across replicas; without, per instance.
 *
 * Runs after the route's rate limit (a replay counts as a request) and after
 * body validation (an invalid body never claims a key).
 */
async function idempotencyPlugin (fastify: FastifyInstance, options: IdempotencyOptions): Promise<void> {
  const { redis, redisOutage } = fastify
  const lifetimes = { ttlMs: options.ttlMs, lockTtlMs: options.lockTtlMs }
  const store = redis === null
    ? createMemoryIdempotencyStore({ ...lifetimes, maxKeys: options.memoryMaxKeys })
    : createRedisIdempotencyStore({ ...lifetimes, redis, keyPrefix: fastify.redisKeys.idempotency })
  fastify.decorateRequest('idempotencyClaim', null)

  async function claimKey (request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const presented = request.headers[idempotencyKeyHeader]
    // The route's headers schema says the same; this keeps the plugin right on a route without one.
    if (typeof presented !== 'string' || presented.length === 0 || presented.length > maxKeyLength) {
      throw gatewayError('invalid_request', { args: [`"Idempotency-Key" must be 1 to ${maxKeyLength} characters.`], param: 'Idempotency-Key' })
    }
    // Hashed: a fixed-length store key whatever the caller sends, and the tenant part cannot be forged by it.
    const key = `${tenantOf(request).id}:${hash('sha256', presented, 'hex')}`
    let outcome
    try {
      outcome = await store.claim(key, requestFingerprint(request.body))
    } catch (cause) {
      // Fail closed: without the store the gateway cannot know whether this key already ran.
      redisOutage?.failed(cause)
      throw storeUnavailable(cause)
    }
    switch (outcome.kind) {
      case 'claimed':
        request.idempotencyClaim = outcome.claim
        return
      case 'in-flight':
        throw gatewayError('idempotency_key_in_flight', { headers: { 'retry-after': inFlightRetryAfter } })
      case 'mismatch':
        throw gatewayError('idempotency_key_reused', { param: 'Idempotency-Key' })
      case 'replay': {
        const { response } = outcome
        request.log.info({ replayOf: response.requestId, status: response.statusCode }, 'idempotent replay')
        reply.code(response.statusCode).type(response.contentType).header('idempotent-replayed', 'true').send(replayBody(response, request.id))
      }
    }
  }

  // onSend, not onResponse: the answer is stored before the caller can see it,
  // so a retry sent the moment it arrives is already a replay, never a 409.
  async function settleKey (request: FastifyRequest, reply: FastifyReply, payload: unknown): Promise<unknown> {
    const claim = request.idempotencyClaim
    if (claim === null) return payload
    request.idempotencyClaim = null
    const final = isFinal(request, reply, payload)
    try {
      if (final) {
        await store.complete(claim, {
          statusCode: reply.statusCode,
          contentType: String(reply.getHeader('content-type') ?? 'application/json; charset=utf-8'),
          body: payload,
          requestId: request.id
        })
      } else {
        await store.release(claim)
      }
    } catch (error) {
      // The answer still goes out; the in-flight claim frees itself when its lock expires.
      redisOutage?.failed(error)
      request.log.warn({ err: error }, final ? 'idempotency: could not store the answer' : 'idempotency: could not release the key')
    }
    return payload
  }

  // Safety net: an answer that never went through onSend must not hold its key until the lock expires.
  async function releaseUnsettled (request: FastifyRequest): Promise<void> {
    const claim = request.idempotencyClaim
    if (claim === null) return
    request.idempotencyClaim = null
    await store.release(claim).catch((error: unknown) => { redisOutage?.failed(error) })
  }

  // Callback style: a create without a key (the common case) costs no promise here.
  function claimHook (request: FastifyRequest, reply: FastifyReply, done: (error?: Error) => void): void {
    if (request.headers[idempotencyKeyHeader] === undefined) {
      done()
      return
    }
    // After a replay the reply is sent, and Fastify skips the handler.
    claimKey(request, reply).then(() => done(), done)
  }
  function settleHook (request: FastifyRequest, reply: FastifyReply, payload: unknown, done: (error: Error | null, payload?: unknown) => void): void {
    if (request.idempotencyClaim === null) {
      done(null, payload)
      return
    }
    settleKey(request, reply, payload).then((settled) => done(null, settled), done)
  }
  function releaseHook (request: FastifyRequest, _reply: FastifyReply, done: () => void): void {
    if (request.idempotencyClaim === null) {
      done()
      return
    }
    releaseUnsettled(request).then(done, done)
  }

  // Per route (no cost on the others): after the route's own preHandlers, among them its rate limit.
  fastify.addHook('onRoute', (routeOptions: RouteOptions) => {
    if (routeOptions.config?.idempotency !== true) return
    const route = routeOptions as unknown as Record<'preHandler' | 'onSend' | 'onResponse', RouteHook | RouteHook[] | undefined>
    route.preHandler = append(route.preHandler, claimHook)
    route.onSend = append(route.onSend, settleHook)
    route.onResponse = append(route.onResponse, releaseHook)
  })
}

export default fp(idempotencyPlugin, { name: 'idempotency', fastify: '5.x', dependencies: ['redis-store', 'rate-limit', 'tenant-auth', 'upstream-client'] })
