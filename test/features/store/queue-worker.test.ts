import t from 'tap'
import pino from 'pino'
import { createQueueWorker } from '../../../src/features/store/queue-worker.ts'

/** A queue of ids claimed in order, and jobs that end when the test says so. */
function harness (options: { concurrency: number, ids: string[] }) {
  const due = [...options.ids]
  const started: string[] = []
  const finished: string[] = []
  const release = new Map<string, () => void>()
  const waiting = new Map<string, () => void>()
  const worker = createQueueWorker({
    name: 'test',
    claim: async (limit) => due.splice(0, limit),
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
    log: pino({ level: 'silent' })
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
  const queue = harness({ concurrency: 2, ids: ['a', 'b', 'c', 'd'] })
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
  const queue = harness({ concurrency: 2, ids: ['a'] })
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
  const queue = harness({ concurrency: 3, ids: ['a', 'b', 'c', 'd', 'e'] })
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
  const queue = harness({ concurrency: 2, ids: ['a', 'b', 'c'] })
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
    claim: async (limit) => due.splice(0, limit),
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
