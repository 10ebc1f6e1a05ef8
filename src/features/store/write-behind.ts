import type { ChainableCommander, Redis } from 'ioredis'

/**
 * Writes a request makes after it has decided its answer (a create's settlement
 * and task-index entry), taken off the request path: nobody waits for Redis to
 * answer them. What is queued in one turn of the event loop leaves in one
 * pipeline, in the loop's check phase (setImmediate), and `send()` resolves once
 * that pipeline is written to the socket: a request that awaits `send()` before
 * answering has its write in Redis's queue (on one connection, ahead of every
 * later command of this instance) before the client has the answer, at the price
 * of a phase of the same loop turn, not a round trip. A crash after that point
 * loses nothing a client was answered for; only a write still waiting for a retry
 * (Redis was away) can be lost, and `onFailure(…, final: true)` says so.
 *
 * A write that fails (Redis away, a timeout) is kept and sent again every
 * `retryMs`, so it must be idempotent (the scripts guard themselves). The
 * writes waiting are bounded by `maxPending`: one beyond it is given up at once.
 */
export interface DeferredWrite {
  /** adds exactly one command to the pipeline */
  add (pipeline: ChainableCommander): void
  /** it failed (`final`: it is given up: the buffer is full, or the app is closing) */
  onFailure (error: unknown, final: boolean): void
}

export interface WriteBehind {
  /** queues a write; resolves once it has been written to the connection (or kept for a retry), never rejects */
  send (write: DeferredWrite): Promise<void>
  /** sends what waits (retries included, at once) and resolves when Redis has answered all of it */
  flush (): Promise<void>
  /** writes queued, in flight or waiting for a retry */
  readonly pending: number
  /** writes handed to Redis so far, retries included (vg_redis_writes_behind_total): script calls nobody waited for */
  readonly sent: number
  /** the last flush: what still fails is given up (`onFailure(…, true)`) and counted in the answer */
  close (): Promise<number>
}

export interface WriteBehindOptions {
  redis: Redis
  /** default 1000 ms */
  retryMs?: number
  /** default 10,000 */
  maxPending?: number
}

export function createWriteBehind (options: WriteBehindOptions): WriteBehind {
  const { redis } = options
  const retryMs = options.retryMs ?? 1000
  const maxPending = options.maxPending ?? 10_000
  let queue: DeferredWrite[] = []
  let retries: DeferredWrite[] = []
  let inFlight = 0
  const answers = new Set<Promise<void>>()
  let sent: { promise: Promise<void>, resolve: () => void } | null = null
  let retryTimer: NodeJS.Timeout | null = null
  let closed = false
  let sentCount = 0

  function failed (writes: readonly DeferredWrite[], error: unknown): void {
    for (const write of writes) {
      const final = closed
      write.onFailure(error, final)
      if (!final) retries.push(write)
    }
    if (!closed && retries.length > 0 && retryTimer === null) {
      retryTimer = setTimeout(() => {
        retryTimer = null
        queue.push(...retries)
        retries = []
        sendQueued()
      }, retryMs).unref()
    }
  }

  /** Writes what is queued as one pipeline; answers the promise of Redis's answer to it. */
  function sendQueued (): Promise<void> {
    const batch = queue
    queue = []
    const waiting = sent
    sent = null
    let answered: Promise<void> = Promise.resolve()
    if (batch.length > 0) {
      if (redis.status !== 'ready') {
        // Failing now would only fail in ioredis (no offline queue): kept for the retry.
        failed(batch, new Error(`redis is ${redis.status}`))
      } else {
        const pipeline = redis.pipeline()
        for (const write of batch) write.add(pipeline)
        inFlight += batch.length
        sentCount += batch.length
        answered = pipeline.exec().then((results) => {
          const failures = batch.filter((_, index) => results?.[index]?.[0] != null)
          const error = results?.find(([error]) => error != null)?.[0]
          if (failures.length > 0) failed(failures, error)
        }, (error: unknown) => { failed(batch, error) }).finally(() => {
          inFlight -= batch.length
          answers.delete(answered)
        })
        answers.add(answered)
      }
    }
    waiting?.resolve()
    return answered
  }

  return {
    send (write) {
      if (queue.length + retries.length + inFlight >= maxPending) {
        write.onFailure(new Error(`${maxPending} writes already wait for Redis`), true)
        return Promise.resolve()
      }
      queue.push(write)
      if (sent === null) {
        let resolveSent!: () => void
        const promise = new Promise<void>((resolve) => { resolveSent = resolve })
        sent = { promise, resolve: resolveSent }
        setImmediate(sendQueued)
      }
      return sent.promise
    },
    async flush () {
      if (retryTimer !== null) {
        clearTimeout(retryTimer)
        retryTimer = null
      }
      queue.push(...retries)
      retries = []
      sendQueued()
      await Promise.all([...answers])
    },
    get pending () {
      return queue.length + retries.length + inFlight
    },
    get sent () {
      return sentCount
    },
    async close () {
      await this.flush()
      closed = true
      // What failed in that last flush went back to `retries` before `closed`: given up now.
      const lost = retries
      retries = []
      if (retryTimer !== null) clearTimeout(retryTimer)
      retryTimer = null
      for (const write of lost) write.onFailure(new Error('not written before close'), true)
      return lost.length
    }
  }
}
