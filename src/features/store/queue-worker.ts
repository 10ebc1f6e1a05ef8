import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyBaseLogger } from 'fastify'
import type { DueQueue } from './due-queue.ts'

export interface QueueWorkerOptions {
  /** what the queue is, for log lines ("webhook", "archive") */
  name: string
  /** the shared queue: claims with a lease, and hands back the leases of work a stop interrupted */
  queue: Pick<DueQueue, 'claimDue' | 'release'>
  /** the queue's clock */
  now: () => number
  /** how long a claim is leased: longer than one job can take */
  leaseMs: number
  /**
   * Works on one claimed id. It reschedules or removes the id itself; if it
   * throws (the store failed), the lease runs out and the id comes back.
   * `signal` aborts when the worker stops: the handler then returns without
   * recording anything, and the worker hands the id back.
   */
  handle (id: string, signal: AbortSignal): Promise<void>
  /** how often the queue is looked at (other instances' work, retries that came due) */
  pollIntervalMs: number
  /** ids worked on at once */
  concurrency: number
  log: FastifyBaseLogger
  /**
   * Aborted when the instance starts draining for shutdown (SIGTERM, the
   * shutdownDrain signal): from then on it claims nothing new, so that other
   * instances take the queue over while this one still answers requests. The
   * work in flight goes on; stop() still lets it finish or hands it back.
   */
  claimUntil?: AbortSignal
}

export interface QueueWorker {
  start (): void
  /** something was queued: look now rather than at the next poll */
  wake (): void
  /** works through every id due now and resolves when done */
  runDue (): Promise<void>
  /**
   * Stops claiming, lets the work in flight finish for up to `graceMs`, then
   * aborts it and hands its leases back (due at once), so that another
   * instance takes the work over now rather than when the lease runs out.
   */
  stop (options?: { graceMs?: number }): Promise<void>
}

/** After the abort: how long aborted handlers get to return before their leases are handed back anyway. */
const abortSettleMs = 1000

/** One loop per instance over a shared queue of due ids (features/store/due-queue.ts). */
export function createQueueWorker (options: QueueWorkerOptions): QueueWorker {
  const { log } = options
  const aborting = new AbortController()
  // Closing: no new claims (the work in flight goes on until `aborting`).
  const closing = new AbortController()
  function stopClaiming (): void {
    if (closing.signal.aborted) return
    closing.abort()
    nudge?.()
    if (timer !== null) clearTimeout(timer)
    timer = null
  }
  let timer: NodeJS.Timeout | null = null
  let running: Promise<void> | null = null
  let again = false
  // A Redis outage is logged once by the store plugin; the queue adds one line per outage, not one per poll.
  let queueFailing = false
  /** ids this worker holds a lease on and has not finished, with the end of each lease */
  const leased = new Map<string, number>()

  /** a drain waiting for a slot or for news: called when a job ends, by wake() and by stop() */
  let nudge: (() => void) | null = null

  async function work (id: string): Promise<void> {
    try {
      await options.handle(id, aborting.signal)
      // Interrupted (it returned because of the abort): the lease is handed back by stop().
      if (!aborting.signal.aborted) leased.delete(id)
    } catch (error) {
      // Not handed back: a store that fails would fail again at once; the lease brings it back later.
      leased.delete(id)
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
      while (!closing.signal.aborted) {
        const free = options.concurrency - inFlight.size
        const at = options.now()
        const ids = free > 0 ? await options.queue.claimDue(at, options.leaseMs, free) : []
        for (const id of ids) {
          leased.set(id, at + options.leaseMs)
          const job: Promise<void> = work(id).finally(() => {
            inFlight.delete(job)
            nudge?.()
          })
          inFlight.add(job)
        }
        if (inFlight.size === 0) return
        if (ids.length === free && free > 0) continue
        // Full, or nothing more due: look again when a job ends, something is queued or the worker stops.
        await new Promise<void>((resolve) => { nudge = resolve })
        nudge = null
      }
    } finally {
      // A claim that failed, or a stop: what runs finishes (or sees the abort) before the next drain.
      await Promise.all(inFlight)
    }
  }

  function schedule (): void {
    if (closing.signal.aborted) return
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
      } while (again && !closing.signal.aborted)
    })().finally(() => {
      running = null
      schedule()
    })
    return running
  }

  /** Settles when `work` does or after `ms`, whichever is first. */
  async function within (work: Promise<void> | null, ms: number): Promise<void> {
    if (work === null) return
    const timeout = new AbortController()
    await Promise.race([work, sleep(ms, undefined, { signal: timeout.signal }).catch(() => {})])
    timeout.abort()
  }

  async function handBack (): Promise<void> {
    const leases = [...leased]
    leased.clear()
    const dueAt = options.now()
    const handedBack = await Promise.all(leases.map(async ([id, leaseUntil]) => {
      try {
        return await options.queue.release(id, { leaseUntil, dueAt })
      } catch (error) {
        log.warn({ err: error, queue: options.name, id }, `${options.name} job could not be handed back; it comes back when its lease runs out`)
        return false
      }
    }))
    const count = handedBack.filter(Boolean).length
    if (count > 0) log.info({ queue: options.name, jobs: count }, `${options.name} jobs under way handed back to the queue for another instance`)
  }

  // (An abort listener added to a signal aborted already is never called.)
  if (options.claimUntil?.aborted === true) stopClaiming()
  options.claimUntil?.addEventListener('abort', () => {
    log.info({ queue: options.name, jobs_in_flight: leased.size }, `draining for shutdown: the ${options.name} queue is left to other instances`)
    stopClaiming()
  }, { once: true })

  return {
    start: schedule,
    wake () { runDue().catch(() => {}) },
    runDue,
    async stop (stopOptions = {}) {
      stopClaiming()
      await within(running, stopOptions.graceMs ?? 0)
      aborting.abort()
      await within(running, abortSettleMs)
      await handBack()
    }
  }
}
