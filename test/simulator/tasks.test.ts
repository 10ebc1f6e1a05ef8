import fc from 'fast-check'
import t from 'tap'
import { creditsFor, newTaskId, TaskStore, type TaskStatus } from '../../src/simulator/tasks.ts'

const ORDER: Record<TaskStatus, number> = { pending: 0, processing: 1, completed: 2, failed: 2 }

t.test('status and progress only move forward, whatever the duration and read times', async (t) => {
  fc.assert(fc.property(
    fc.integer({ min: 0, max: 600_000 }),
    fc.array(fc.integer({ min: 0, max: 1_200_000 }), { minLength: 1, maxLength: 30 }),
    fc.boolean(),
    (durationMs, offsets, fails) => {
      let now = 1_700_000_000_000
      const store = new TaskStore({ durationMs, now: () => now })
      const task = store.create({ model: 'm', prompt: fails ? '[fail:service_error]' : 'ok' })
      const start = now
      let last = { status: 'pending' as TaskStatus, progress: 0 }
      for (const offset of [...offsets].sort((a, b) => a - b)) {
        now = start + offset
        const state = store.state(task)
        if (ORDER[state.status] < ORDER[last.status] || state.progress < last.progress) return false
        if (state.status === 'pending' && state.progress !== 0) return false
        if (state.status === 'processing' && (state.progress < 1 || state.progress > 99)) return false
        if (state.status === 'completed' && (fails || state.progress !== 100 || offset < durationMs)) return false
        if (state.status === 'failed' && (!fails || state.progress !== 50)) return false
        const view = store.view(task, 'http://h')
        if (view.status !== state.status || view.progress !== state.progress) return false
        if ((view.results !== undefined) !== (state.status === 'completed')) return false
        if ((view.error !== undefined) !== (state.status === 'failed')) return false
        if (view.task_info.can_cancel !== (state.status === 'pending' || state.status === 'processing')) return false
        last = state
      }
      return true
    }
  ))
})

t.test('task ids', async (t) => {
  fc.assert(fc.property(fc.integer({ min: 0, max: 4_102_444_800_000 }), (ms) =>
    new RegExp(`^task-unified-${Math.floor(ms / 1000)}-[a-z0-9]{8}$`).test(newTaskId(ms))))
})

t.test('credits are positive, one decimal, and scale with n', async (t) => {
  fc.assert(fc.property(
    fc.constantFrom(4, 6, 8), fc.integer({ min: 1, max: 4 }), fc.constantFrom('720p', '1080p', '4k'), fc.boolean(),
    (duration, n, quality, audio) => {
      const one = creditsFor({ n: 1, quality, generate_audio: audio }, duration)
      const many = creditsFor({ n, quality, generate_audio: audio }, duration)
      return one > 0 && Math.abs(many - one * n) < 0.051 && Math.round(many * 10) / 10 === many
    }
  ))
})
