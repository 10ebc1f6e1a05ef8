import type { FastifyReply } from 'fastify'
import { progressed, type TaskSnapshot } from './snapshot.ts'
import type { TaskStatus } from './status.ts'

/**
 * Resolves with the first snapshot whose status or progress differs from
 * `first`, or the latest one at the deadline, when the client leaves or when
 * the app closes.
 */
export async function waitForProgress (options: { taskStatus: TaskStatus, upstreamId: string, first: TaskSnapshot, waitMs: number, reply: FastifyReply }): Promise<TaskSnapshot> {
  const { taskStatus, first } = options
  if (first.terminal || options.waitMs === 0 || taskStatus.closing.aborted) return first
  return await new Promise((resolve, reject) => {
    let latest = first
    const stop = taskStatus.follow(options.upstreamId, options.reply, {
      snapshot (snapshot) {
        latest = snapshot
        if (snapshot.terminal || progressed(first, snapshot)) settle(() => resolve(snapshot))
      },
      failed (error) { settle(() => reject(error)) },
      gone () { clearTimeout(timer); resolve(latest) }
    })
    const timer = setTimeout(() => settle(() => resolve(latest)), options.waitMs)
    function settle (answer: () => void): void {
      clearTimeout(timer)
      stop()
      answer()
    }
  })
}
