import autocannon from 'autocannon'

/**
 * One autocannon run, in this process (the same load generator for both
 * sides). Latencies are recorded here from every response, in microsecond
 * precision: autocannon's own histogram floors to whole milliseconds, too
 * coarse for a 1 ms target on loopback.
 */
export interface LoadSpec {
  url: string
  method: 'GET' | 'POST'
  headers: Record<string, string>
  body?: string
  connections: number
  durationS: number
  /** fixed total rate (autocannon overallRate); absent: as fast as it answers */
  overallRate?: number
}

export interface LoadResult {
  requests: number
  /** completed responses per second */
  rps: number
  /** latency percentiles, ms */
  p50: number
  p99: number
  max: number
  /** connection errors and timeouts */
  errors: number
  non2xx: number
  statusCodes: Record<string, number>
  durationS: number
  /** CPU time the server under test used per response, µs (set by the caller, which knows its pid) */
  serverCpuUs: number | null
}

/** Nearest-rank percentile of sorted values. */
export function percentile (sorted: Float64Array, fraction: number): number {
  if (sorted.length === 0) return Number.NaN
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(fraction * sorted.length) - 1))] as number
}

export function round (value: number, digits: number): number {
  const factor = 10 ** digits
  return Math.round(value * factor) / factor
}

export async function runLoad (spec: LoadSpec): Promise<LoadResult> {
  let latencies = new Float64Array(1 << 16)
  let count = 0
  const instance = autocannon({
    url: spec.url,
    method: spec.method,
    headers: spec.headers,
    body: spec.body,
    connections: spec.connections,
    duration: spec.durationS,
    pipelining: 1,
    timeout: 10,
    ...(spec.overallRate === undefined
      ? {}
      // Its correction assumes evenly spaced requests, which its per-second bursts are not.
      : { overallRate: spec.overallRate, ignoreCoordinatedOmission: true })
  })
  instance.on('response', (_client: unknown, _statusCode: number, _bytes: number, responseTimeMs: number) => {
    if (count === latencies.length) {
      const grown = new Float64Array(latencies.length * 2)
      grown.set(latencies)
      latencies = grown
    }
    latencies[count++] = responseTimeMs
  })
  const result = await instance
  const sorted = latencies.subarray(0, count).sort()
  const statusCodes: Record<string, number> = {}
  for (const [code, { count: n }] of Object.entries(result.statusCodeStats)) statusCodes[code] = n
  return {
    requests: count,
    rps: Math.round(count / result.duration),
    p50: round(percentile(sorted, 0.5), 3),
    p99: round(percentile(sorted, 0.99), 3),
    max: round(percentile(sorted, 1), 3),
    errors: result.errors,
    non2xx: result.non2xx,
    statusCodes,
    durationS: result.duration,
    serverCpuUs: null
  }
}
