import { setTimeout as sleep } from 'node:timers/promises'
import { Pool } from 'undici'
import { percentile, round, type LoadResult } from './load.ts'

/**
 * Requests at an even rate (one every 1/rate s, caught up each millisecond
 * tick), for a latency figure under a light, steady load. autocannon's fixed
 * rate sends each second's share back to back at the start of the second, so
 * its p99 is mostly the queue of that burst; a tenant reading its tasks while
 * another's are archived is not a burst. Latency: from the request's start to
 * the end of its body, in this process.
 */
export interface SteadyLoadSpec {
  url: string
  headers: Record<string, string>
  rate: number
  connections: number
  /** the longest it runs */
  durationS: number
  /** ends the run early when it settles */
  until?: Promise<unknown>
}

export async function runSteadyLoad (spec: SteadyLoadSpec): Promise<LoadResult> {
  const url = new URL(spec.url)
  const pool = new Pool(url.origin, { connections: spec.connections, pipelining: 1, keepAliveTimeout: 65_000 })
  const path = url.pathname + url.search
  const latencies: number[] = []
  const statusCodes: Record<string, number> = {}
  let errors = 0
  let non2xx = 0
  const state = { stopped: false }
  spec.until?.finally(() => { state.stopped = true }).catch(() => {})
  const inFlight = new Set<Promise<void>>()

  const one = async (): Promise<void> => {
    const started = performance.now()
    try {
      const answer = await pool.request({ method: 'GET', path, headers: spec.headers, headersTimeout: 10_000, bodyTimeout: 10_000 })
      await answer.body.dump({ limit: Infinity })
      latencies.push(performance.now() - started)
      statusCodes[answer.statusCode] = (statusCodes[answer.statusCode] ?? 0) + 1
      if (answer.statusCode < 200 || answer.statusCode > 299) non2xx++
    } catch {
      errors++
    }
  }

  const start = performance.now()
  const deadline = start + spec.durationS * 1000
  let sent = 0
  while (!state.stopped && performance.now() < deadline) {
    const due = Math.floor((performance.now() - start) * spec.rate / 1000)
    for (; sent < due; sent++) {
      const request = one()
      inFlight.add(request)
      request.finally(() => inFlight.delete(request)).catch(() => {})
    }
    await sleep(1)
  }
  const elapsedS = (performance.now() - start) / 1000
  await Promise.all(inFlight)
  await pool.close()
  const sorted = Float64Array.from(latencies).sort()
  return {
    requests: latencies.length,
    rps: Math.round(latencies.length / elapsedS),
    p50: round(percentile(sorted, 0.5), 3),
    p99: round(percentile(sorted, 0.99), 3),
    max: round(percentile(sorted, 1), 3),
    errors,
    non2xx,
    statusCodes,
    durationS: round(elapsedS, 3),
    serverCpuUs: null
  }
}
