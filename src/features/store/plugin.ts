import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import { createOutageTracker, type OutageTracker } from './outage-tracker.ts'
import { redisKeyMap, type RedisKeyMap } from './keys.ts'
import { createWriteBehind, type WriteBehind } from './write-behind.ts'
import { DependencyUnreachableError } from '../../errors/startup.ts'

export interface RedisStoreOptions {
  /** empty: no shared store, state stays in this process */
  redisUrl: string
  /** how long start-up waits for the first connection */
  connectTimeoutMs?: number
  /** what the gateway does while Redis is down, for the one warning per outage */
  outagePolicy?: string
  /** REDIS_KEY_PREFIX: the start of every key (default `vg:`) */
  keyPrefix?: string
}

declare module 'fastify' {
  interface FastifyInstance {
    /** the shared store, or null in single-instance (memory) mode */
    redis: Redis | null
    /** whether the shared store is down right now (null in memory mode): one warning per outage, one info on recovery */
    redisOutage: OutageTracker | null
    /** every Redis key namespace, under REDIS_KEY_PREFIX (decorated in memory mode too) */
    redisKeys: RedisKeyMap
    /** writes off the request path (a create's settlement and index entry), one pipeline per loop turn (null in memory mode) */
    redisWriteBehind: WriteBehind | null
  }
}

async function redisStorePlugin (fastify: FastifyInstance, options: RedisStoreOptions): Promise<void> {
  fastify.decorate('redisKeys', redisKeyMap(options.keyPrefix))
  if (options.redisUrl === '') {
    fastify.decorate('redis', null)
    fastify.decorate('redisOutage', null)
    fastify.decorate('redisWriteBehind', null)
    return
  }
  const redis = new Redis(options.redisUrl, {
    lazyConnect: true,
    connectTimeout: options.connectTimeoutMs ?? 5000,
    // Fail fast while disconnected instead of queueing: a request must not wait
    // on a Redis that is gone (rate limiting then follows RATE_LIMIT_ON_STORE_ERROR,
    // idempotency claims fail closed). ioredis keeps reconnecting on its own.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    // A Redis that stops answering without closing the connection must not hold requests either.
    commandTimeout: 1000,
    // Commands issued in the same tick (under load, many requests' rate-limit checks and
    // admissions) leave in one write: each write to a socket is a syscall.
    enableAutoPipelining: true
  })
  // Every reconnect attempt of an outage emits 'error': the tracker logs the first only.
  const outage = createOutageTracker({ dependency: 'redis', log: fastify.log, policy: options.outagePolicy ?? 'requests that need it fail' })
  let closing = false
  // ioredis rejects connect() with "Connection is closed." after the fact: the reason is the last 'error'.
  let lastError: NodeJS.ErrnoException | null = null
  redis.on('error', (error) => {
    lastError = error
    outage.failed(error)
  })
  redis.on('close', () => { if (!closing) outage.failed(new Error('connection closed')) })
  redis.on('ready', () => outage.recovered())
  try {
    await redis.connect()
  } catch (error) {
    redis.disconnect()
    const reason = (lastError as NodeJS.ErrnoException | null) ?? error as NodeJS.ErrnoException
    // Host and port only: the URL may hold a password.
    const where = redis.options.path ?? `${redis.options.host ?? ''}:${redis.options.port ?? ''}`
    throw new DependencyUnreachableError(`REDIS_URL: cannot connect to Redis at ${where} (${reason.code ?? reason.message}): start it, or fix or empty REDIS_URL`, { cause: reason })
  }
  fastify.decorate('redis', redis)
  fastify.decorate('redisOutage', outage)
  const writeBehind = createWriteBehind({ redis })
  fastify.decorate('redisWriteBehind', writeBehind)
  fastify.addHook('onClose', async () => {
    // The creates this instance answered are written before the connection quits (each write reports its own loss).
    await writeBehind.close()
    closing = true
    await redis.quit().catch(() => redis.disconnect())
  })
}

export default fp(redisStorePlugin, { name: 'redis-store', fastify: '5.x' })
