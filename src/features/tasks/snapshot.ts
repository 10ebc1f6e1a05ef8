import { hash } from 'node:crypto'
import type { VideoGenerationTask } from '../../schemas/generated/evolink.ts'

/**
 * One read of an upstream task, shared by every caller that asks for it while
 * it is fresh (and, with Redis, by every instance). `task` is exactly what the
 * upstream sent and is never mutated: each answer copies it with the caller's
 * tenant-scoped id.
 */
export interface TaskSnapshot {
  readonly task: Readonly<VideoGenerationTask>
  /** strong ETag of the upstream body: changes whenever anything in it does */
  readonly etag: string
  /** completed or failed: it will not change any more */
  readonly terminal: boolean
  /** ms since the epoch, when the upstream answered */
  readonly fetchedAt: number
}

/** Statuses after which a task never changes (`cancelled` appears in upstream texts, not in its enum). */
const terminalStatuses = new Set(['completed', 'failed', 'cancelled'])

export function isTerminalStatus (status: unknown): boolean {
  return typeof status === 'string' && terminalStatuses.has(status)
}

export function takeSnapshot (task: VideoGenerationTask, fetchedAt: number): TaskSnapshot {
  const digest = hash('sha256', JSON.stringify(task), 'base64url').slice(0, 27)
  return { task, etag: `"${digest}"`, terminal: isTerminalStatus(task.status), fetchedAt }
}

/**
 * What a waiting client is waiting for: the status or the progress moving.
 * (The whole body changes more often: the upstream's estimated time counts down.)
 */
export function progressed (before: TaskSnapshot, after: TaskSnapshot): boolean {
  return before.task.status !== after.task.status || before.task.progress !== after.task.progress
}

/** Whether an If-None-Match header value names this ETag (weak comparison, as RFC 9110 asks for GET). */
export function matchesIfNoneMatch (header: string | undefined, etag: string): boolean {
  if (header === undefined) return false
  if (header.trim() === '*') return true
  return header.split(',').some((candidate) => candidate.trim().replace(/^W\//, '') === etag)
}
