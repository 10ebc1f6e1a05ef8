import { request } from 'undici'
import type { TaskRecord, TaskStore } from './tasks.ts'

/** One call the simulator made to a callback_url. */
export interface CallbackAttempt {
  taskId: string
  url: string
  /** 1 for the first call, then one per retry */
  attempt: number
  /** the receiver's status, or null when the call failed */
  statusCode: number | null
}

export interface CallbackSenderOptions {
  tasks: TaskStore
  /** the simulator's base URL, for result links in the body */
  baseUrl (): string
  /** waits before each retry (upstream: 1 s, 2 s, 4 s) */
  retryDelaysMs?: readonly number[]
  /** upstream: 10 s */
  timeoutMs?: number
}

/**
 * The upstream's callbacks: when a task completes or fails, a POST of the
 * task-status JSON to its callback_url; any 2xx ends it, otherwise up to 3
 * retries after 1 s, 2 s, 4 s. A timer fires at the task's planned end; a
 * task read that finds the task ended sends it too (tests that move an
 * injected clock do not wait for the timer).
 */
export class CallbackSender {
  readonly attempts: CallbackAttempt[] = []
  readonly #options: CallbackSenderOptions
  readonly #waiting = new Map<string, { url: string, timer: NodeJS.Timeout }>()
  readonly #retries = new Set<NodeJS.Timeout>()
  readonly #closing = new AbortController()
  readonly #inFlight = new Set<Promise<void>>()

  constructor (options: CallbackSenderOptions) {
    this.#options = options
  }

  track (task: TaskRecord, url: string): void {
    const end = task.failure === undefined ? this.#options.tasks.durationMs : this.#options.tasks.durationMs * 0.5
    const timer = setTimeout(() => this.check(task), Math.ceil(end) + 1)
    timer.unref()
    this.#waiting.set(task.id, { url, timer })
  }

  /** Sends the callback if the task has ended and it was not sent yet. */
  check (task: TaskRecord): void {
    const waiting = this.#waiting.get(task.id)
    if (waiting === undefined) return
    const { status } = this.#options.tasks.state(task)
    if (status !== 'completed' && status !== 'failed') return
    clearTimeout(waiting.timer)
    this.#waiting.delete(task.id)
    this.#start(task, waiting.url, 1)
  }

  /** Resolves when no callback call is in flight (retries waiting on their timer do not count). */
  async idle (): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.all([...this.#inFlight])
  }

  close (): void {
    this.#closing.abort()
    for (const { timer } of this.#waiting.values()) clearTimeout(timer)
    this.#waiting.clear()
    for (const timer of this.#retries) clearTimeout(timer)
    this.#retries.clear()
  }

  clear (): void {
    for (const { timer } of this.#waiting.values()) clearTimeout(timer)
    this.#waiting.clear()
    this.attempts.length = 0
  }

  #start (task: TaskRecord, url: string, attempt: number): void {
    const sending = this.#send(task, url, attempt).catch(() => {}).finally(() => this.#inFlight.delete(sending))
    this.#inFlight.add(sending)
  }

  async #send (task: TaskRecord, url: string, attempt: number): Promise<void> {
    if (this.#closing.signal.aborted) return
    let statusCode: number | null = null
    try {
      const answer = await request(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(this.#options.tasks.view(task, this.#options.baseUrl())),
        signal: AbortSignal.any([this.#closing.signal, AbortSignal.timeout(this.#options.timeoutMs ?? 10_000)])
      })
      await answer.body.dump().catch(() => {})
      statusCode = answer.statusCode
    } catch {
      statusCode = null
    }
    this.attempts.push({ taskId: task.id, url, attempt, statusCode })
    if (statusCode !== null && statusCode >= 200 && statusCode < 300) return
    const delays = this.#options.retryDelaysMs ?? [1000, 2000, 4000]
    const delay = delays[attempt - 1]
    if (delay === undefined || this.#closing.signal.aborted) return
    const timer = setTimeout(() => {
      this.#retries.delete(timer)
      this.#start(task, url, attempt + 1)
    }, delay)
    timer.unref()
    this.#retries.add(timer)
  }
}
