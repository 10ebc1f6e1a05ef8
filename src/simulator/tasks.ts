import { randomInt } from 'node:crypto'

/** Task failure codes documented by the upstream, with the message the simulator gives them. */
export const TASK_FAILURE_MESSAGES: Readonly<Record<string, string>> = {
  content_policy_violation: 'The content violates the usage policy',
  invalid_parameters: 'Invalid parameters for video generation',
  image_processing_error: 'Failed to process the input image',
  image_dimension_mismatch: 'Input image dimensions do not match the requested aspect ratio',
  request_cancelled: 'The request was cancelled',
  generation_failed_no_content: 'Generation finished without producing content',
  service_error: 'Video generation service error',
  generation_timeout: 'Video generation timed out',
  resource_exhausted: 'Generation resources are exhausted, please try again later',
  quota_exceeded: 'Quota exceeded',
  service_unavailable: 'Video generation service is temporarily unavailable',
  resource_not_found: 'Resource not found',
  unknown_error: 'Unknown error'
}

/** Result links stop working this long after completion (upstream: 24 h). */
export const RESULT_TTL_MS = 24 * 60 * 60 * 1000

/** Tasks are forgotten (404 task_not_found) this long after creation, to bound memory. */
export const TASK_RETENTION_MS = 7 * 24 * 60 * 60 * 1000

/** A prompt containing `[fail:<code>]` makes the task fail with that code. */
const FAIL_MARKER = /\[fail:([a-z0-9_]+)\]/

export type TaskStatus = 'pending' | 'processing' | 'completed' | 'failed'

export interface TaskUsage {
  billing_rule: 'per_call'
  credits_reserved: number
  user_group: 'default'
}

export interface TaskRecord {
  id: string
  model: string
  /** ms since the epoch */
  createdAtMs: number
  /** unix seconds */
  created: number
  n: number
  videoDuration: number
  estimatedTime: number
  usage: TaskUsage
  failure?: { code: string, message: string }
}

export interface TaskInput {
  model: string
  prompt: string
  n?: number
  duration?: number
  quality?: string
  generate_audio?: boolean
  generation_type?: string
}

export interface TaskView {
  created: number
  error?: { code: string, message: string, type: 'task_error' }
  id: string
  model: string
  object: 'video.generation.task'
  progress: number
  results?: string[]
  status: TaskStatus
  task_info: { can_cancel: boolean, estimated_time?: number, video_duration: number }
  type: 'video'
  usage: TaskUsage
}

const ID_ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789'
const CREDITS_PER_SECOND: Readonly<Record<string, number>> = { '720p': 1.6, '1080p': 2, '4k': 4 }

export function newTaskId (nowMs: number): string {
  let suffix = ''
  for (let i = 0; i < 8; i++) suffix += ID_ALPHABET[randomInt(ID_ALPHABET.length)]
  return `task-unified-${Math.floor(nowMs / 1000)}-${suffix}`
}

/** Plausible pricing: per second by quality, x1.5 with audio (the default), times n; one decimal. */
export function creditsFor (input: Pick<TaskInput, 'n' | 'quality' | 'generate_audio'>, videoDuration: number): number {
  const perSecond = CREDITS_PER_SECOND[input.quality ?? '720p'] ?? CREDITS_PER_SECOND['720p']!
  const audio = input.generate_audio === false ? 1 : 1.5
  return Math.round(videoDuration * perSecond * audio * (input.n ?? 1) * 10) / 10
}

/**
 * In-memory tasks and their clock-driven lifecycle. With duration D and
 * elapsed time e: pending (progress 0) while e < 10 % of D, processing with
 * progress floor(100 e / D) (1..99) until e >= D, then completed (progress 100,
 * one result per n). A `[fail:<code>]` task fails half-way (e >= 50 % of D)
 * and keeps progress 50.
 */
export class TaskStore {
  readonly durationMs: number
  readonly #now: () => number
  readonly #tasks = new Map<string, TaskRecord>()

  constructor (options: { durationMs: number, now: () => number }) {
    this.durationMs = options.durationMs
    this.#now = options.now
  }

  get size (): number {
    return this.#tasks.size
  }

  create (input: TaskInput): TaskRecord {
    const nowMs = this.#now()
    this.#prune(nowMs)
    const videoDuration = input.generation_type === 'REFERENCE' ? 8 : (input.duration ?? 4)
    const task: TaskRecord = {
      id: newTaskId(nowMs),
      model: input.model,
      createdAtMs: nowMs,
      created: Math.floor(nowMs / 1000),
      n: input.n ?? 1,
      videoDuration,
      estimatedTime: Math.ceil(this.durationMs / 1000),
      usage: { billing_rule: 'per_call', credits_reserved: creditsFor(input, videoDuration), user_group: 'default' }
    }
    const code = FAIL_MARKER.exec(input.prompt)?.[1]
    if (code !== undefined) task.failure = { code, message: TASK_FAILURE_MESSAGES[code] ?? `Task failed: ${code}` }
    this.#tasks.set(task.id, task)
    return task
  }

  get (id: string): TaskRecord | undefined {
    return this.#tasks.get(id)
  }

  clear (): void {
    this.#tasks.clear()
  }

  /** Status and progress at the current clock. */
  state (task: TaskRecord): { status: TaskStatus, progress: number, remainingMs: number } {
    const duration = this.durationMs
    const elapsed = this.#now() - task.createdAtMs
    const remainingMs = Math.max(0, duration - elapsed)
    if (task.failure !== undefined && elapsed >= duration * 0.5) return { status: 'failed', progress: 50, remainingMs: 0 }
    if (elapsed >= duration) return { status: 'completed', progress: 100, remainingMs: 0 }
    if (elapsed < duration * 0.1) return { status: 'pending', progress: 0, remainingMs }
    const progress = Math.min(99, Math.max(1, Math.floor((elapsed * 100) / duration)))
    return { status: 'processing', progress, remainingMs }
  }

  /** Whether result `index` of `task` can be downloaded now (completed, in range, not expired). */
  isFileAvailable (task: TaskRecord, index: number): boolean {
    if (index < 0 || index >= task.n) return false
    if (this.state(task).status !== 'completed') return false
    return this.#now() < task.createdAtMs + this.durationMs + RESULT_TTL_MS
  }

  /** The create response. */
  created (task: TaskRecord): TaskView {
    return {
      created: task.created,
      id: task.id,
      model: task.model,
      object: 'video.generation.task',
      progress: 0,
      status: 'pending',
      task_info: { can_cancel: true, estimated_time: task.estimatedTime, video_duration: task.videoDuration },
      type: 'video',
      usage: { ...task.usage }
    }
  }

  /** The task-status response; result links are `<baseUrl>/files/<id>-<i>.mp4`. */
  view (task: TaskRecord, baseUrl: string): TaskView {
    const { status, progress, remainingMs } = this.state(task)
    const view: TaskView = {
      created: task.created,
      id: task.id,
      model: task.model,
      object: 'video.generation.task',
      progress,
      status,
      task_info: { can_cancel: false, video_duration: task.videoDuration },
      type: 'video',
      usage: { ...task.usage }
    }
    if (status === 'pending' || status === 'processing') {
      view.task_info = { can_cancel: true, estimated_time: Math.ceil(remainingMs / 1000), video_duration: task.videoDuration }
    } else if (status === 'completed') {
      view.results = Array.from({ length: task.n }, (_, i) => `${baseUrl}/files/${task.id}-${i}.mp4`)
    } else if (task.failure !== undefined) {
      view.error = { code: task.failure.code, message: task.failure.message, type: 'task_error' }
    }
    return orderKeys(view)
  }

  #prune (nowMs: number): void {
    // Insertion order is creation order, so stop at the first task still kept.
    for (const [id, task] of this.#tasks) {
      if (nowMs < task.createdAtMs + TASK_RETENTION_MS) break
      this.#tasks.delete(id)
    }
  }
}

/** Keeps the upstream's alphabetical key order (error and results slot in). */
function orderKeys (view: TaskView): TaskView {
  const sorted: Record<string, unknown> = {}
  for (const key of Object.keys(view).sort()) sorted[key] = view[key as keyof TaskView]
  return sorted as unknown as TaskView
}
