import t from 'tap'
import { randomBytes } from 'node:crypto'
import { Redis } from 'ioredis'
import { pino } from 'pino'
import { createMemoryDueQueue, createRedisDueQueue, type DueQueue } from '../../../src/features/store/due-queue.ts'
import { createQueueWorker } from '../../../src/features/store/queue-worker.ts'
import { redisForTests } from '../../helpers/redis.ts'

const log = pino({ level: 'silent' })
const leaseMs = 600_000

/** A job that runs until it is told to finish, or until the worker aborts it. */
function controlledJobs () {
  const started: string[] = []
  const finished: string[] = []
  const aborted: string[] = []
  const finishers = new Map<string, () => void>()
  const waiters: Array<{ count: number, resolve: () => void }> = []
  return {
    started,
    finished,
    aborted,
    finish (id: string) { finishers.get(id)!() },
    async startedCount (count: number) {
      if (started.length >= count) return
      await new Promise<void>((resolve) => waiters.push({ count, resolve }))
    },
    /** a handler in the worker's terms: done (removed from the queue) when finished, nothing recorded when aborted */
    handler (queue: DueQueue) {
      return async (id: string, signal: AbortSignal): Promise<void> => {
        started.push(id)
        for (const waiter of waiters.filter((candidate) => started.length >= candidate.count)) waiter.resolve()
        const outcome = await new Promise<'finished' | 'aborted'>((resolve) => {
          finishers.set(id, () => { resolve('finished') })
          signal.addEventListener('abort', () => { resolve('aborted') }, { once: true })
        })
        if (outcome === 'aborted') {
          aborted.push(id)
          return
        }
        await queue.remove(id)
        finished.push(id)
      }
    }
  }
}

t.test('memory queue: a stopping worker lets the job under way finish within the grace, and takes no new job', async (t) => {
  const queue = createMemoryDueQueue()
  const now = 1_000_000
  await queue.schedule('job-1', now)
  const jobs = controlledJobs()
  const worker = createQueueWorker({ name: 'test', queue, now: () => now, leaseMs, handle: jobs.handler(queue), pollIntervalMs: 3_600_000, concurrency: 1, log })
  const running = worker.runDue()
  await jobs.startedCount(1)
  t.equal(await queue.nextDueAt(), now + leaseMs, 'leased')
  // Queued after the stop began: it is left for another instance.
  const stopped = worker.stop({ graceMs: 60_000 })
  await queue.schedule('job-2', now)
  jobs.finish('job-1')
  await stopped
  await running
  t.same(jobs.finished, ['job-1'], 'the job under way finished')
  t.same(jobs.aborted, [])
  t.same(jobs.started, ['job-1'], 'no job was taken after the stop began')
  t.equal(await queue.size(), 1)
  t.equal(await queue.nextDueAt(), now, 'the new job is untouched, due now')
})

t.test('memory queue: a job still under way past the grace is aborted and handed back, due at once for another worker', async (t) => {
  const queue = createMemoryDueQueue()
  let now = 2_000_000
  const clock = () => now
  for (const id of ['job-1', 'job-2', 'job-3']) await queue.schedule(id, now)
  const jobs = controlledJobs()
  const first = createQueueWorker({ name: 'test', queue, now: clock, leaseMs, handle: jobs.handler(queue), pollIntervalMs: 3_600_000, concurrency: 3, log })
  const running = first.runDue()
  await jobs.startedCount(3)
  jobs.finish('job-2')
  t.same(await queue.claimDue(now, leaseMs, 10), [], 'job-1 and job-3 are leased to the first worker')
  now += 5_000
  await first.stop({ graceMs: 0 })
  await running
  t.same(jobs.aborted.sort(), ['job-1', 'job-3'])
  t.equal(await queue.size(), 2, 'job-2 was done; the interrupted ones are still queued')
  t.equal(await queue.nextDueAt(), now, 'handed back: due at the time of the stop, not at the end of the lease')

  // Another worker (another instance) takes them over now, with no clock moved.
  const second = controlledJobs()
  const other = createQueueWorker({ name: 'test', queue, now: clock, leaseMs, handle: second.handler(queue), pollIntervalMs: 3_600_000, concurrency: 3, log })
  const again = other.runDue()
  await second.startedCount(2)
  t.same([...second.started].sort(), ['job-1', 'job-3'])
  second.finish('job-1')
  second.finish('job-3')
  await again
  t.equal(await queue.size(), 0)
  await other.stop()
})

t.test('memory queue: once the drain signal aborts, the worker claims nothing new; the job under way goes on, and stop() hands it back', async (t) => {
  const queue = createMemoryDueQueue()
  const now = 3_000_000
  await queue.schedule('job-1', now)
  const jobs = controlledJobs()
  const draining = new AbortController()
  const lines: Array<Record<string, unknown>> = []
  const drainLog = pino({ level: 'info' }, { write: (line: string) => { lines.push(JSON.parse(line)) } })
  const worker = createQueueWorker({ name: 'test', queue, now: () => now, leaseMs, handle: jobs.handler(queue), pollIntervalMs: 10, concurrency: 2, log: drainLog, claimUntil: draining.signal })
  worker.start()
  await jobs.startedCount(1)
  draining.abort()
  t.match(lines.find((line) => line.queue === 'test'), { msg: 'draining for shutdown: the test queue is left to other instances', jobs_in_flight: 1 })
  // Queued during the drain (this instance still answers requests): woken, polled, but not claimed.
  await queue.schedule('job-2', now)
  worker.wake()
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.same(jobs.started, ['job-1'], 'nothing claimed during the drain')
  t.same(jobs.aborted, [], 'the job under way is not interrupted by the drain')
  t.same(await queue.claimDue(now, leaseMs, 10), ['job-2'], 'another instance takes the new job')
  await worker.stop({ graceMs: 0 })
  t.same(jobs.aborted, ['job-1'], 'the close still hands back what ran')
  t.same(await queue.claimDue(now, leaseMs, 10), ['job-1'], 'due at once for another instance')
})

t.test('memory queue: a worker made after the drain began never claims', async (t) => {
  const queue = createMemoryDueQueue()
  await queue.schedule('job-1', 100)
  const jobs = controlledJobs()
  const worker = createQueueWorker({ name: 'test', queue, now: () => 100, leaseMs, handle: jobs.handler(queue), pollIntervalMs: 10, concurrency: 1, log, claimUntil: AbortSignal.abort() })
  worker.start()
  await worker.runDue()
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.same(jobs.started, [])
  t.equal(await queue.nextDueAt(), 100, 'the job is untouched')
  await worker.stop()
})

t.test('memory queue: release hands back only the claimer\'s own lease', async (t) => {
  const queue = createMemoryDueQueue()
  await queue.schedule('a', 100)
  t.same(await queue.claimDue(100, 1000, 10), ['a'])
  t.equal(await queue.release('a', { leaseUntil: 1099, dueAt: 150 }), false, 'not the lease it holds')
  t.equal(await queue.nextDueAt(), 1100)
  await queue.schedule('a', 5000)
  t.equal(await queue.release('a', { leaseUntil: 1100, dueAt: 150 }), false, 'rescheduled by its handler: kept')
  t.equal(await queue.nextDueAt(), 5000)
  await queue.remove('a')
  t.equal(await queue.release('a', { leaseUntil: 1100, dueAt: 150 }), false, 'finished: not queued again')
  t.equal(await queue.size(), 0)
  await queue.schedule('b', 100)
  await queue.claimDue(100, 1000, 10)
  t.equal(await queue.release('b', { leaseUntil: 1100, dueAt: 150 }), true)
  t.same(await queue.claimDue(150, 1000, 10), ['b'], 'claimable at once')
})

t.test('memory queue: a job whose handler throws is not handed back (its lease brings it back later)', async (t) => {
  const queue = createMemoryDueQueue()
  await queue.schedule('broken', 10)
  const worker = createQueueWorker({ name: 'test', queue, now: () => 10, leaseMs, handle: async () => { throw new Error('store down') }, pollIntervalMs: 3_600_000, concurrency: 1, log })
  await worker.runDue()
  await worker.stop({ graceMs: 0 })
  t.equal(await queue.nextDueAt(), 10 + leaseMs)
})

const redis = await redisForTests()

t.test('Redis queue: release is compare-and-set on the lease, shared by every instance', { skip: 'skip' in redis ? redis.skip : false }, async (t) => {
  if ('skip' in redis) return
  const key = `vg-test:due-queue:${process.pid}:${randomBytes(6).toString('hex')}`
  const clients = [new Redis(redis.url), new Redis(redis.url)]
  t.teardown(async () => {
    await clients[0]!.del(key)
    for (const client of clients) client.disconnect()
  })
  const [one, two] = clients.map((client) => createRedisDueQueue({ redis: client, key }))
  await one!.schedule('a', 100)
  await one!.schedule('b', 100)
  t.same((await one!.claimDue(100, 1000, 10)).sort(), ['a', 'b'])
  t.same(await two!.claimDue(500, 1000, 10), [], 'leased')
  t.equal(await two!.release('a', { leaseUntil: 1099, dueAt: 500 }), false, 'not the lease it holds')
  await one!.schedule('b', 9000)
  t.equal(await one!.release('b', { leaseUntil: 1100, dueAt: 500 }), false, 'rescheduled: kept')
  t.equal(await one!.release('a', { leaseUntil: 1100, dueAt: 500 }), true)
  t.equal(await clients[1]!.zscore(key, 'a'), '500', 'due at the hand-back time')
  t.equal(await clients[1]!.zscore(key, 'b'), '9000')
  t.same(await two!.claimDue(500, 1000, 10), ['a'], 'the other instance takes it at once')
  await one!.remove('a')
  t.equal(await one!.release('a', { leaseUntil: 1500, dueAt: 600 }), false, 'finished: not queued again')
  t.equal(await clients[1]!.zscore(key, 'a'), null)
})

// Slots: a finished job makes room for the next at once (no batches).
/** A queue of ids claimed in order, and jobs that end when the test says so. */
function slotHarness (options: { concurrency: number, ids: string[] }) {
  const due = [...options.ids]
  const started: string[] = []
  const finished: string[] = []
  const release = new Map<string, () => void>()
  const waiting = new Map<string, () => void>()
  const worker = createQueueWorker({
    name: 'test',
    queue: { claimDue: async (_at: number, _leaseMs: number, limit: number) => due.splice(0, limit), release: async () => true },
    now: () => 0,
    leaseMs: 60_000,
    handle: async (id, signal) => {
      started.push(id)
      waiting.get(id)?.()
      await new Promise<void>((resolve) => {
        release.set(id, resolve)
        signal.addEventListener('abort', () => resolve(), { once: true })
      })
      finished.push(id)
    },
    pollIntervalMs: 3_600_000,
    concurrency: options.concurrency,
    log
  })
  /** resolves once `id` has started */
  const startedOf = async (id: string): Promise<void> => {
    if (started.includes(id)) return
    await new Promise<void>((resolve) => waiting.set(id, resolve))
  }
  const finish = (id: string): void => {
    const resolve = release.get(id)
    if (resolve === undefined) throw new Error(`${id} is not running`)
    resolve()
  }
  return { due, started, finished, worker, startedOf, finish }
}

t.test('a slot is refilled when its job ends, while the others still run', async (t) => {
  const queue = slotHarness({ concurrency: 2, ids: ['a', 'b', 'c', 'd'] })
  const drained = queue.worker.runDue()
  await queue.startedOf('b')
  t.same(queue.started, ['a', 'b'], 'two at once')
  queue.finish('b')
  await queue.startedOf('c')
  t.same(queue.started, ['a', 'b', 'c'], 'c started although a still runs')
  t.same(queue.finished, ['b'])
  queue.finish('a')
  await queue.startedOf('d')
  queue.finish('c')
  queue.finish('d')
  await drained
  t.same(queue.finished.sort(), ['a', 'b', 'c', 'd'], 'runDue resolves when every due id is done')
  t.same(queue.due, [])
  await queue.worker.stop()
})

t.test('an id queued while jobs run is claimed at once when a slot is free', async (t) => {
  const queue = slotHarness({ concurrency: 2, ids: ['a'] })
  const drained = queue.worker.runDue()
  await queue.startedOf('a')
  queue.due.push('late')
  queue.worker.wake()
  await queue.startedOf('late')
  t.same(queue.started, ['a', 'late'], 'started before a ended')
  queue.finish('a')
  queue.finish('late')
  await drained
  t.same(queue.finished.sort(), ['a', 'late'])
  await queue.worker.stop()
})

t.test('never more than `concurrency` at once', async (t) => {
  const queue = slotHarness({ concurrency: 3, ids: ['a', 'b', 'c', 'd', 'e'] })
  const drained = queue.worker.runDue()
  await queue.startedOf('c')
  queue.worker.wake()
  await new Promise((resolve) => setImmediate(resolve))
  t.same(queue.started, ['a', 'b', 'c'], 'a wake with every slot busy starts nothing')
  queue.finish('a')
  await queue.startedOf('d')
  t.same(queue.started, ['a', 'b', 'c', 'd'])
  for (const id of ['b', 'c', 'd']) queue.finish(id)
  await queue.startedOf('e')
  queue.finish('e')
  await drained
  await queue.worker.stop()
})

t.test('stop aborts the jobs in flight and waits for them', async (t) => {
  const queue = slotHarness({ concurrency: 2, ids: ['a', 'b', 'c'] })
  queue.worker.runDue().catch(() => {})
  await queue.startedOf('b')
  await queue.worker.stop()
  t.same(queue.finished.sort(), ['a', 'b'], 'both ended on the abort')
  t.same(queue.due, ['c'], 'nothing claimed after the stop')
})

t.test('a job that throws is logged and its slot is freed', async (t) => {
  const lines: string[] = []
  const log = pino({ level: 'error' }, { write: (line: string) => { lines.push(line) } })
  const handled: string[] = []
  const due = ['bad', 'good']
  const worker = createQueueWorker({
    name: 'test',
    queue: { claimDue: async (_at: number, _leaseMs: number, limit: number) => due.splice(0, limit), release: async () => true },
    now: () => 0,
    leaseMs: 60_000,
    handle: async (id) => {
      handled.push(id)
      if (id === 'bad') throw new Error('store down')
    },
    pollIntervalMs: 3_600_000,
    concurrency: 1,
    log
  })
  await worker.runDue()
  t.same(handled, ['bad', 'good'])
  t.equal(lines.length, 1)
  t.match(JSON.parse(lines[0]!), { queue: 'test', id: 'bad', msg: 'test job could not be recorded; it comes back when its lease runs out', err: { message: 'store down' } })
  await worker.stop()
})
