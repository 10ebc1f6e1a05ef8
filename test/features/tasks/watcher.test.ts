import t from 'tap'
import pino from 'pino'
import { createTaskWatcher } from '../../../src/features/tasks/watcher.ts'
import { takeSnapshot, type TaskSnapshot } from '../../../src/features/tasks/snapshot.ts'
import { gatewayError } from '../../../src/errors/table.ts'

/** A read that answers from a script: snapshots or errors, one per poll. */
function scriptedRead (script: Array<TaskSnapshot | Error>) {
  const state = { reads: 0 }
  return {
    state,
    async read (): Promise<TaskSnapshot> {
      const next = script[Math.min(state.reads++, script.length - 1)] as TaskSnapshot | Error
      if (next instanceof Error) throw next
      return next
    }
  }
}
const snapshot = (status: string, progress: number) => takeSnapshot({ id: 'task-unified-1', status: status as 'processing', progress }, Date.now())
const log = pino({ enabled: false })

t.test('one poll loop however many listeners; transient failures are polled through; the terminal snapshot ends it', async (t) => {
  const upstream = scriptedRead([snapshot('processing', 10), gatewayError('upstream_unavailable'), gatewayError('upstream_timeout'), snapshot('processing', 30), snapshot('completed', 100)])
  const watcher = createTaskWatcher({ read: upstream.read, intervalMs: 5, log })
  const seen = await Promise.all(Array.from({ length: 20 }, async () => await new Promise<string[]>((resolve, reject) => {
    const statuses: string[] = []
    watcher.watch('task-unified-1', {
      snapshot (s) { statuses.push(`${s.task.status} ${s.task.progress}`); if (s.terminal) resolve(statuses) },
      failed: reject
    })
  })))
  t.same(seen[0], ['processing 10', 'processing 30', 'completed 100'])
  t.ok(seen.every((statuses) => statuses.join() === seen[0]?.join()), 'every listener saw the same')
  t.equal(upstream.state.reads, 5, 'five reads for twenty listeners')
  t.equal(watcher.size, 0)
})

t.test('an error polling will not cure ends the watch for every listener', async (t) => {
  const gone = gatewayError('not_found', { args: ['Task not found.'] })
  const watcher = createTaskWatcher({ read: scriptedRead([gone]).read, intervalMs: 5, log })
  const errors = await Promise.all([1, 2].map(async () => await new Promise((resolve) => watcher.watch('task-unified-2', { snapshot () {}, failed: resolve }))))
  t.same(errors, [gone, gone])
  t.equal(watcher.size, 0)
})

t.test('the last listener leaving, or close, stops the loop', async (t) => {
  const upstream = scriptedRead([snapshot('processing', 10)])
  const watcher = createTaskWatcher({ read: upstream.read, intervalMs: 5, log })
  const stop = watcher.watch('task-unified-3', { snapshot () {}, failed () {} })
  await new Promise((resolve) => setTimeout(resolve, 30))
  stop()
  const readsAtStop = upstream.state.reads
  t.ok(readsAtStop > 0)
  await new Promise((resolve) => setTimeout(resolve, 30))
  t.ok(upstream.state.reads <= readsAtStop + 1, 'at most the read already running')
  watcher.watch('task-unified-4', { snapshot () {}, failed () {} })
  t.equal(watcher.size, 1)
  watcher.close()
  t.equal(watcher.size, 0)
})
