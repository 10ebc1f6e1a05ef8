import type { FastifyBaseLogger } from 'fastify'
import { isGatewayError } from '../../errors/table.ts'
import type { TaskSnapshot } from './snapshot.ts'

export interface TaskListener {
  /** every snapshot the watch reads (the listener decides what counts as a change) */
  snapshot (snapshot: TaskSnapshot): void
  /** the watch ended on an error that polling again will not cure (the task is gone, the key refused) */
  failed (error: unknown): void
}

export interface TaskWatcherOptions {
  /** the coalesced, cached read (task-reader.ts) */
  read (upstreamId: string): Promise<TaskSnapshot>
  /** time between two reads of one watched task */
  intervalMs: number
  log: FastifyBaseLogger
}

interface Watch {
  listeners: Set<TaskListener>
  timer: NodeJS.Timeout | undefined
}

/**
 * Long-polls and event streams wait on a task through here: one poll loop per
 * watched task in this process, however many clients wait on it, reading every
 * `intervalMs` through the task reader (so across instances too, the upstream
 * sees about one read per interval). The loop stops with its last listener, on
 * a terminal status, or on an error that will not pass; transient failures
 * (5xx, timeouts, an open breaker) are polled through.
 */
export function createTaskWatcher (options: TaskWatcherOptions): {
  watch (upstreamId: string, listener: TaskListener): () => void
  /** ends every watch (the app is closing); listeners are not called */
  close (): void
  /** tasks watched right now */
  readonly size: number
} {
  const watches = new Map<string, Watch>()

  function schedule (upstreamId: string, watch: Watch): void {
    watch.timer = setTimeout(() => {
      poll(upstreamId, watch).catch((error: unknown) => { options.log.error({ err: error }, 'task watch: a listener failed') })
    }, options.intervalMs)
  }

  async function poll (upstreamId: string, watch: Watch): Promise<void> {
    watch.timer = undefined
    let snapshot: TaskSnapshot
    try {
      snapshot = await options.read(upstreamId)
    } catch (error) {
      if (watches.get(upstreamId) !== watch) return
      if (isGatewayError(error) && error.statusCode < 500) {
        end(upstreamId, watch)
        for (const listener of watch.listeners) listener.failed(error)
        return
      }
      options.log.debug({ err: error, upstreamTaskId: upstreamId }, 'task watch: read failed, polling on')
      schedule(upstreamId, watch)
      return
    }
    if (watches.get(upstreamId) !== watch) return
    if (snapshot.terminal) end(upstreamId, watch)
    else schedule(upstreamId, watch)
    for (const listener of [...watch.listeners]) listener.snapshot(snapshot)
  }

  function end (upstreamId: string, watch: Watch): void {
    clearTimeout(watch.timer)
    watch.timer = undefined
    if (watches.get(upstreamId) === watch) watches.delete(upstreamId)
  }

  return {
    watch (upstreamId, listener) {
      let watch = watches.get(upstreamId)
      if (watch === undefined) {
        watch = { listeners: new Set(), timer: undefined }
        watches.set(upstreamId, watch)
        schedule(upstreamId, watch)
      }
      const joined = watch
      joined.listeners.add(listener)
      return () => {
        joined.listeners.delete(listener)
        if (joined.listeners.size === 0) end(upstreamId, joined)
      }
    },
    close () {
      for (const [upstreamId, watch] of watches) end(upstreamId, watch)
    },
    get size () { return watches.size }
  }
}
