import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { Gauge } from 'prom-client'
import { createMemoryTaskCache, createRedisTaskCache } from './cache.ts'
import { createTaskReader, type TaskRead } from './reader.ts'
import { createTaskWatcher, type TaskListener } from './watcher.ts'
import { takeSnapshot, type TaskSnapshot } from './snapshot.ts'
import { readUpstreamTask } from '../upstream/task.ts'

export interface TaskStatusOptions {
  /** a pending or processing status is reused this long; a watched task is polled this often */
  statusTtlMs: number
  /** a completed or failed task is kept this long */
  terminalTtlMs: number
  /** without Redis: tasks kept in memory */
  memoryMaxEntries: number
  /** the upstream deadline: the longest one instance waits for another's read */
  upstreamTimeoutMs: number
  /** clock of the in-memory cache's TTLs and of snapshots (default Date.now) */
  now?: () => number
}

/** The gateway saw a task: in a read, a long-poll, an event stream, or a callback it confirmed. */
export interface TaskSighting {
  tenantId: string
  upstreamTaskId: string
  snapshot: TaskSnapshot
}

/** Told of every sighting of a finished task, possibly more than once per task: it must be idempotent. */
export type TaskFinishedListener = (finished: TaskSighting) => Promise<void> | void

export interface TaskStatus {
  /** the task, from a fresh snapshot or one coalesced upstream read; `request` gets the upstream status for the access log if it leads */
  read (upstreamId: string, request?: FastifyRequest): Promise<TaskRead>
  /**
   * The task's status confirmed: a cached finished task as it is, otherwise a
   * fresh upstream read (stored for every reader). For callbacks, whose body is not trusted.
   */
  confirm (upstreamId: string): Promise<TaskSnapshot>
  /**
   * Watches the task for one request (task-watcher.ts: a callback on every poll)
   * until the returned function is called; `gone` ends it when the client
   * leaves or the app closes (then the watch has already stopped).
   */
  follow (upstreamId: string, reply: FastifyReply, listener: TaskListener & { gone (): void }): () => void
  /** for an answer of this snapshot: caches may keep a finished task as long as the gateway does, a running one only with revalidation */
  cacheControl (snapshot: TaskSnapshot): string
  /**
   * The one "task finished" event of the gateway: every place that sees a task
   * reports it here, and if it is finished every listener (usage, …) hears of
   * it, in order, before this resolves. Never throws.
   */
  observe (sighting: TaskSighting): Promise<void>
  /** subscribes to finished tasks (features do, while the app is built) */
  onFinished (listener: TaskFinishedListener): void
  /** the app is closing: long-polls answer at once, event streams end */
  readonly closing: AbortSignal
}

declare module 'fastify' {
  interface FastifyInstance {
    taskStatus: TaskStatus
  }
  interface FastifyRequest {
    /** how a task read was served, for the access log: hit, miss (asked the upstream), shared */
    taskCache: TaskRead['source'] | null
  }
}

async function taskStatusPlugin (fastify: FastifyInstance, options: TaskStatusOptions): Promise<void> {
  const now = options.now ?? Date.now
  const cache = fastify.redis === null
    ? createMemoryTaskCache({ maxEntries: options.memoryMaxEntries, now })
    : createRedisTaskCache({ redis: fastify.redis, keyPrefix: fastify.redisKeys.task })
  const reader = createTaskReader<FastifyRequest>({
    cache,
    statusTtlMs: options.statusTtlMs,
    terminalTtlMs: options.terminalTtlMs,
    claimWaitMs: options.upstreamTimeoutMs,
    async fetch (upstreamId, request) {
      const answer = await fastify.upstream.send({ method: 'GET', path: `/v1/tasks/${encodeURIComponent(upstreamId)}`, request })
      return takeSnapshot(readUpstreamTask(answer.body), now())
    }
  })
  const watcher = createTaskWatcher({ read: async (upstreamId) => await reader.read(upstreamId), intervalMs: options.statusTtlMs, log: fastify.log })
  new Gauge({ // eslint-disable-line no-new
    name: 'vg_task_watches',
    help: 'Tasks this instance watches right now for long-polls and event streams: one upstream poll loop each (every TASK_STATUS_TTL_MS), however many clients wait on it.',
    registers: [fastify.metrics.registry],
    collect () { this.set(watcher.size) }
  })
  const closing = new AbortController()
  const finishedListeners: TaskFinishedListener[] = []

  fastify.decorateRequest('taskCache', null)
  fastify.decorate('taskStatus', {
    async read (upstreamId, request) {
      const read = await reader.read(upstreamId, request)
      if (request !== undefined) request.taskCache = read.source
      return read
    },
    async confirm (upstreamId) {
      const read = await reader.read(upstreamId)
      if (read.terminal) return read
      return read.source === 'miss' ? read : await reader.refresh(upstreamId)
    },
    follow (upstreamId, reply, listener) {
      const stopWatching = watcher.watch(upstreamId, listener)
      const stop = (): void => {
        stopWatching()
        closing.signal.removeEventListener('abort', gone)
        reply.raw.off('close', gone)
      }
      const gone = (): void => {
        stop()
        listener.gone()
      }
      closing.signal.addEventListener('abort', gone)
      reply.raw.once('close', gone)
      return stop
    },
    cacheControl (snapshot) {
      if (!snapshot.terminal) return 'private, no-cache'
      const leftMs = options.terminalTtlMs - Math.max(0, now() - snapshot.fetchedAt)
      return `private, max-age=${Math.max(0, Math.floor(leftMs / 1000))}`
    },
    async observe (sighting) {
      if (!sighting.snapshot.terminal) return
      for (const listener of finishedListeners) {
        try {
          await listener(sighting)
        } catch (error) {
          // A listener's own failure is its own: the others still hear of the task.
          fastify.log.error({ err: error, tenant: sighting.tenantId, upstreamTaskId: sighting.upstreamTaskId }, 'a task-finished listener failed')
        }
      }
    },
    onFinished (listener) {
      finishedListeners.push(listener)
    },
    closing: closing.signal
  } satisfies TaskStatus)
  // preClose, not onClose: Fastify's close waits for running requests, and a
  // long-poll or an event stream would otherwise hold it for minutes.
  fastify.addHook('preClose', (done) => {
    closing.abort()
    watcher.close()
    done()
  })
}

export default fp(taskStatusPlugin, { name: 'task-status', fastify: '5.x', dependencies: ['redis-store', 'upstream-client', 'metrics'] })
