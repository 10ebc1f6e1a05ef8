import type { FastifyBaseLogger } from 'fastify'

/**
 * Turns a stream of failure and success signals about one dependency into
 * transitions: one warning when it goes away, one info line when it is back.
 * A dependency that is down fails every request (and every reconnect attempt),
 * and a log line per failure would drown the log exactly when it matters.
 */
export interface OutageTracker {
  /** true between the first failure and the next recovery */
  readonly down: boolean
  /** when the current outage began (performance.now()), or null */
  readonly since: number | null
  failed (error: unknown): void
  recovered (): void
}

export interface OutageTrackerOptions {
  /** what is down, for the log: `redis` */
  dependency: string
  log: FastifyBaseLogger
  /** what the gateway does meanwhile, logged with the warning */
  policy: string
}

function describe (error: unknown): { message: string, code?: string } {
  if (typeof error !== 'object' || error === null) return { message: String(error) }
  const { message, code } = error as { message?: unknown, code?: unknown }
  return { message: String(message), ...(typeof code === 'string' ? { code } : {}) }
}

export function createOutageTracker (options: OutageTrackerOptions): OutageTracker {
  const { dependency, log, policy } = options
  let since: number | null = null
  return {
    get down () { return since !== null },
    get since () { return since },
    failed (error) {
      if (since !== null) return
      since = performance.now()
      // Only the message and code: a connection error can carry the URL, and with it a password.
      log.warn({ dependency, err: describe(error), policy }, `${dependency} is unavailable: ${policy}`)
    },
    recovered () {
      if (since === null) return
      const downMs = Math.round(performance.now() - since)
      since = null
      log.info({ dependency, downMs }, `${dependency} is available again`)
    }
  }
}
