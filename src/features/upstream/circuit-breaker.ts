/**
 * A consecutive-failures circuit breaker. Closed: calls go through, and
 * `failureThreshold` failures in a row (successes and non-failures reset the
 * count) open it. Open: calls are rejected at once, without running, for
 * `openMs`. Then half-open: ONE call (the probe) runs while the others are
 * still rejected; its success closes the breaker, its failure opens it again
 * for another `openMs`.
 *
 * Hand-written rather than opossum: opossum trips on an error percentage over a
 * rolling window (timers and buckets), not on consecutive failures, and brings
 * its own timeout; this is a small state machine on an injectable clock, with
 * no timer at all, which is exactly the semantics wanted and easy to test.
 */
export type BreakerState = 'closed' | 'open' | 'half-open'

export interface CircuitBreakerOptions {
  /** consecutive failures that open it; 0 disables the breaker */
  failureThreshold: number
  /** how long it stays open before a probe */
  openMs: number
  /** which errors count as failures (others are answers: they close and reset it) */
  isFailure: (error: unknown) => boolean
  /** the error a rejected call gets; `retryAfterMs` is how long until the next probe may run */
  rejection: (retryAfterMs: number) => Error
  /** called once per transition (for the log) */
  onTransition?: (transition: { from: BreakerState, to: BreakerState, failures: number }) => void
  /** clock, ms (tests) */
  now?: () => number
}

export interface CircuitBreaker {
  readonly state: BreakerState
  run<T> (fn: () => Promise<T>): Promise<T>
}

/** what a caller rejected while the probe runs is told to wait */
const probeRetryAfterMs = 1000

export function createCircuitBreaker (options: CircuitBreakerOptions): CircuitBreaker {
  const { failureThreshold, openMs, isFailure, rejection, onTransition } = options
  const now = options.now ?? Date.now
  let state: BreakerState = 'closed'
  let failures = 0
  let openedAt = 0
  let probing = false

  function moveTo (to: BreakerState): void {
    const from = state
    state = to
    if (to === 'open') openedAt = now()
    if (to === 'closed') failures = 0
    onTransition?.({ from, to, failures })
  }

  /** An open breaker whose pause is over is half-open (ready for a probe). */
  function current (): BreakerState {
    if (state === 'open' && now() - openedAt >= openMs) moveTo('half-open')
    return state
  }

  function succeeded (probe: boolean): void {
    if (probe) {
      probing = false
      moveTo('closed')
    } else if (state === 'closed') {
      failures = 0
    }
  }

  function failed (probe: boolean): void {
    if (probe) {
      probing = false
      moveTo('open')
      return
    }
    // Calls that started before the breaker opened may still fail afterwards: they change nothing.
    if (state !== 'closed') return
    failures += 1
    if (failures >= failureThreshold) moveTo('open')
  }

  return {
    get state () {
      return failureThreshold === 0 ? 'closed' : current()
    },
    async run (fn) {
      if (failureThreshold === 0) return fn()
      const before = current()
      if (before === 'open') throw rejection(openedAt + openMs - now())
      if (before === 'half-open' && probing) throw rejection(probeRetryAfterMs)
      const probe = before === 'half-open'
      if (probe) probing = true
      let result
      try {
        result = await fn()
      } catch (error) {
        if (isFailure(error)) failed(probe)
        else succeeded(probe)
        throw error
      }
      succeeded(probe)
      return result
    }
  }
}
