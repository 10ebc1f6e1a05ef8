import { createRequire } from 'node:module'
import type { Redis } from 'ioredis'
import type { FastifyRateLimitStore, FastifyRateLimitStoreCtor } from '@fastify/rate-limit'
import { storeUnavailable } from '../../errors/table.ts'
import type { OutageTracker } from './outage-tracker.ts'

/**
 * A @fastify/rate-limit store that counts in Redis and, while Redis is down,
 * follows an explicit policy instead of @fastify/rate-limit's all-or-nothing
 * `skipOnError`:
 *
 * - `memory`: counts in this process (the plugin's own LocalStore) until Redis
 *   is back. Each instance then enforces the whole limit by itself, so N
 *   instances allow up to N times the limit during an outage, never unlimited.
 * - `allow`: lets requests through uncounted (the upstream still limits).
 * - `deny`: answers 503 store_unavailable.
 *
 * The Redis and memory counters are @fastify/rate-limit's own stores (same Lua
 * script, same LRU), reached by their files because the package exports no
 * entry for them.
 */
export type StoreErrorPolicy = 'memory' | 'allow' | 'deny'

type StoreResult = { current: number, ttl: number }
type Callback = (error: Error | null, result?: StoreResult) => void

interface InnerStore {
  incr (key: string, callback: Callback, timeWindow: number, max: number): void
  read? (key: string, callback: Callback, timeWindow: number, max: number): void
  child (routeOptions: unknown): InnerStore
}

const require = createRequire(import.meta.url)
const RedisStore = require('@fastify/rate-limit/store/RedisStore.js') as new (continueExceeding: boolean, exponentialBackoff: boolean, redis: Redis, nameSpace: string) => InnerStore
const LocalStore = require('@fastify/rate-limit/store/LocalStore.js') as new (continueExceeding: boolean, exponentialBackoff: boolean, cache?: number) => InnerStore

/** What the plugin hands a store (its merged settings); only these matter to the inner stores. */
interface StoreParams {
  continueExceeding?: boolean
  exponentialBackoff?: boolean
  cache?: number
}

/** What `allow` reports: nothing counted, so the request is within its limit. */
const uncounted: StoreResult = { current: 0, ttl: 0 }

export interface FallbackStoreOptions {
  redis: Redis
  keyPrefix: string
  policy: StoreErrorPolicy
  /** told about every failure (it logs once per outage) */
  outage: OutageTracker
}

export function fallbackRateLimitStore (options: FallbackStoreOptions): FastifyRateLimitStoreCtor {
  const { redis, keyPrefix, policy, outage } = options

  class FallbackStore {
    readonly #remote: InnerStore
    readonly #local: InnerStore

    constructor (params: StoreParams, inner?: { remote: InnerStore, local: InnerStore }) {
      const continueExceeding = params.continueExceeding === true
      const exponentialBackoff = params.exponentialBackoff === true
      this.#remote = inner?.remote ?? new RedisStore(continueExceeding, exponentialBackoff, redis, keyPrefix)
      this.#local = inner?.local ?? new LocalStore(continueExceeding, exponentialBackoff, params.cache)
    }

    incr (key: string, callback: Callback, timeWindow: number, max: number): void {
      this.#call('incr', key, callback, timeWindow, max)
    }

    read (key: string, callback: Callback, timeWindow: number, max: number): void {
      this.#call('read', key, callback, timeWindow, max)
    }

    child (routeOptions: unknown): FastifyRateLimitStore {
      const remote = this.#remote.child(routeOptions)
      const local = this.#local.child(routeOptions)
      return new FallbackStore(routeOptions as StoreParams, { remote, local }) as unknown as FastifyRateLimitStore
    }

    #call (method: 'incr' | 'read', key: string, callback: Callback, timeWindow: number, max: number): void {
      // While disconnected every command would fail at once anyway: skip it.
      if (redis.status !== 'ready') {
        this.#fallback(method, key, callback, timeWindow, max, new Error(`redis is ${redis.status}`))
        return
      }
      this.#remote[method]?.(key, (error, result) => {
        if (error === null) {
          callback(null, result)
          return
        }
        this.#fallback(method, key, callback, timeWindow, max, error)
      }, timeWindow, max)
    }

    #fallback (method: 'incr' | 'read', key: string, callback: Callback, timeWindow: number, max: number, cause: Error): void {
      outage.failed(cause)
      if (policy === 'memory') {
        this.#local[method]?.(key, callback, timeWindow, max)
        return
      }
      if (policy === 'allow') {
        callback(null, uncounted)
        return
      }
      callback(storeUnavailable(cause))
    }
  }

  return FallbackStore as unknown as FastifyRateLimitStoreCtor
}

/** A fixed-window count as @fastify/rate-limit's stores answer it: requests so far in the window, ms left in it. */
export type RateLimitCount = StoreResult

/**
 * The counter the `memory` policy falls back to, for a limit counted outside
 * @fastify/rate-limit (a create's, by the admission script: usage/store/redis.ts):
 * the plugin's own LocalStore, so that it counts exactly as the routes' fallback does.
 */
export function localRateLimitCounter (cache?: number): { incr (key: string, timeWindowMs: number, max: number): RateLimitCount } {
  const local = new LocalStore(false, false, cache)
  return {
    incr (key, timeWindowMs, max) {
      let counted: StoreResult = uncounted
      // LocalStore answers synchronously.
      local.incr(key, (_error, result) => { if (result !== undefined) counted = result }, timeWindowMs, max)
      return counted
    }
  }
}

/** @fastify/rate-limit's wording of a wait ("30 seconds", "1 minute"), from the library it uses for it. */
export const formatWait = (createRequire(require.resolve('@fastify/rate-limit'))('@lukeed/ms') as { format (ms: number, long: boolean): string }).format
