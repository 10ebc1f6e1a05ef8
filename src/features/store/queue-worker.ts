import type { FastifyBaseLogger } from 'fastify'

export interface QueueWorkerOptions {
  /** what the queue is, for log lines ("webhook", "archive") */
  name: string
  /** claims due ids with a lease (DueQueue.claimDue, bound to the queue's clock) */
  claim (limit: number): Promise<string[]>
  /**
   * Works on one claimed id. It reschedules or removes the id itself; if it
   * throws (the store failed), the lease runs out and the id comes back.
   * `signal` aborts when the worker stops: the handler then leaves the id to its lease.
   */
  handle (id: string, signal: AbortSignal): Promise<void>
  /** how often the queue is looked at (other instances' work, retries that came due) */
  pollIntervalMs: number
  /** ids worked on at once */
  concurrency: number
  log: FastifyBaseLogger
}

export interface QueueWorker {
  start (): void
  /** something was queued: look now rather than at the next poll */
  wake (): void
  /** works through every id due now and resolves when done */
  runDue (): Promise<void>
  /** stops polling and aborts work in flight (leases run out, so the work is done again later) */
  stop (): Promise<void>
}

/** One loop per instance over a shared queue of due ids (features/store/due-queue.ts). */
export function createQueueWorker (options: QueueWorkerOptions): QueueWorker {
  const { log } = options
  const stopping = new AbortController()
  let timer: NodeJS.Timeout | null = null
  let running: Promise<void> | null = null
  let again = false
  // A Redis outage is logged once by the store plugin; the queue adds one line per outage, not one per poll.
  let queueFailing = false

  async function drain (): Promise<void> {
    for (;;) {
      if (stopping.signal.aborted) return
      const ids = await options.claim(options.concurrency)
      if (ids.length === 0) return
      await Promise.all(ids.map(async (id) => {
        try {
          await options.handle(id, stopping.signal)
        } catch (error) {
          log.error({ err: error, queue: options.name, id }, `${options.name} job could not be recorded; it comes back when its lease runs out`)
        }
      }))
    }
  }

  function schedule (): void {
    if (stopping.signal.aborted) return
    if (timer !== null) clearTimeout(timer)
    timer = setTimeout(() => { timer = null; runDue().catch(() => {}) }, options.pollIntervalMs)
    timer.unref()
  }

  function runDue (): Promise<void> {
    if (running !== null) {
      again = true
      return running
    }
    running = (async () => {
      do {
        again = false
        try {
          await drain()
          queueFailing = false
        } catch (error) {
          if (!queueFailing) log.error({ err: error, queue: options.name }, `${options.name} queue could not be read; retrying every poll until it can`)
          queueFailing = true
        }
      } while (again && !stopping.signal.aborted)
    })().finally(() => {
      running = null
      schedule()
    })
    return running
  }

  return {
    start: schedule,
    wake () { runDue().catch(() => {}) },
    runDue,
    async stop () {
      stopping.abort()
      if (timer !== null) clearTimeout(timer)
      timer = null
      await running
    }
  }
}
