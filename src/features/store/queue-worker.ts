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

  /** a drain waiting for a slot or for news: called when a job ends and by wake() */
  let nudge: (() => void) | null = null

  async function work (id: string): Promise<void> {
    try {
      await options.handle(id, stopping.signal)
    } catch (error) {
      log.error({ err: error, queue: options.name, id }, `${options.name} job could not be recorded; it comes back when its lease runs out`)
    }
  }

  /**
   * Keeps up to `concurrency` ids in flight until none is due: a slot is filled
   * again as soon as its id is done, not when a whole batch is (batches wait for
   * their slowest job: a 20 MB archive download holds back seven finished slots).
   */
  async function drain (): Promise<void> {
    const inFlight = new Set<Promise<void>>()
    try {
      while (!stopping.signal.aborted) {
        const free = options.concurrency - inFlight.size
        const ids = free > 0 ? await options.claim(free) : []
        for (const id of ids) {
          const job: Promise<void> = work(id).finally(() => {
            inFlight.delete(job)
            nudge?.()
          })
          inFlight.add(job)
        }
        if (inFlight.size === 0) return
        if (ids.length === free && free > 0) continue
        // Full, or nothing more due: look again when a job ends or something is queued.
        await new Promise<void>((resolve) => { nudge = resolve })
        nudge = null
      }
    } finally {
      // A claim that failed, or a stop: what runs finishes (or sees the abort) before the next drain.
      await Promise.all(inFlight)
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
      nudge?.()
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
