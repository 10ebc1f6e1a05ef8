import fp from 'fastify-plugin'
import type { FastifyBaseLogger, FastifyInstance, FastifyRequest } from 'fastify'
import { Pool, type Dispatcher } from 'undici'
import { mapUpstreamFailure } from './failure.ts'
import { createScrubber } from './scrub.ts'
import { callWithRetries, type RetryPolicy } from './retry.ts'
import type { CircuitBreaker } from './circuit-breaker.ts'
import type { UpstreamAttempt } from '../observability/metrics.ts'

export interface UpstreamClientOptions {
  baseUrl: string
  apiKey: string
  timeoutMs: number
  connections: number
  maxResponseBytes: number
  /** tests pass their own (a MockAgent, an Agent with odd settings); otherwise two Pools (creates, reads) are owned here */
  dispatcher?: Dispatcher
  /** retries of one call, all within timeoutMs (lib/retry.ts); default: none */
  retry?: RetryPolicy
  /** around every attempt (upstream-breaker.ts); default: none */
  breaker?: CircuitBreaker
  /** for calls that have no request (retries are logged) */
  log?: FastifyBaseLogger
  /** told of every attempt, its duration and the gateway error it failed with (metrics) */
  onAttempt?: (attempt: UpstreamAttempt) => void
  /** a span around every attempt that reaches the upstream (observability/tracing.ts); default: none */
  tracing?: UpstreamTracing | null
}

/** What one traced attempt sends and reports. */
export interface AttemptTrace {
  /** W3C trace context headers (`traceparent`) for the upstream */
  headers: Record<string, string>
  /** the upstream's status, once it answered */
  status (statusCode: number): void
}

export interface UpstreamTracing {
  attempt<T> (call: UpstreamCall, run: (attempt: AttemptTrace) => Promise<T>): Promise<T>
}

export interface UpstreamCall {
  method: 'GET' | 'POST'
  /** path below the upstream base URL, e.g. `/v1/tasks/<id>` */
  path: string
  body?: unknown
  /**
   * the caller's request: gets the upstream status and latency for the access
   * log, and its logger is used; absent for the gateway's own background reads
   * (task watches), which log through the app's logger
   */
  request?: FastifyRequest
}

export interface UpstreamAnswer {
  statusCode: number
  /** the parsed JSON object the upstream sent (2xx only) */
  body: Record<string, unknown>
}

export interface UpstreamClient {
  send (call: UpstreamCall): Promise<UpstreamAnswer>
}

declare module 'fastify' {
  interface FastifyInstance {
    upstream: UpstreamClient
  }
  interface FastifyRequest {
    upstreamStatus: number | null
    upstreamLatencyMs: number | null
  }
}

class ResponseTooLargeError extends Error {
  override name = 'ResponseTooLargeError'
}

class DeadlineError extends Error {
  override name = 'TimeoutError'
}

/**
 * undici's own timeouts start once a request has a socket, and a request queued
 * behind connects that hang is released only when they time out, wave after
 * wave, whatever its abort signal says. This bounds the whole wait by the
 * deadline; an answer that arrives after it is discarded. A plain timer, not
 * AbortSignal.timeout(): the signal, its weak reference and its listeners cost
 * several µs per call on the hot path (profiled), and nothing else listens to it.
 */
function withinDeadline (budgetMs: number, pending: Promise<Dispatcher.ResponseData>): Promise<Dispatcher.ResponseData> {
  // (Not async: the promise itself is the answer, one fewer to make per call.)
  return new Promise((resolve, reject) => {
    let late = false
    const timer = setTimeout(() => {
      late = true
      reject(new DeadlineError(`no upstream answer within ${budgetMs} ms`))
    }, budgetMs)
    pending.then((response) => {
      clearTimeout(timer)
      // Too late: drain and drop it (destroying it would raise an error nobody listens to).
      if (late) response.body.dump().catch(() => {})
      else resolve(response)
    }, (error: unknown) => {
      clearTimeout(timer)
      reject(error)
    })
  })
}

/**
 * Reads the body up to `limit` bytes and until `deadline` (performance.now()
 * time). undici's bodyTimeout catches a body that stops; the deadline check
 * catches one that trickles forever, without a timer per request.
 */
function readLimited (body: Dispatcher.ResponseData['body'], options: { limit: number, deadline: number, declaredLength: string | string[] | undefined }): Promise<string> {
  const { limit, declaredLength } = options
  if (typeof declaredLength === 'string' && Number(declaredLength) > limit) {
    body.destroy()
    return Promise.reject(new ResponseTooLargeError(`upstream declared ${declaredLength} bytes, over ${limit}`))
  }
  // Fast path, the common case: a declared length within the limit (undici enforces it); undici's promise as it is.
  if (typeof declaredLength === 'string' && declaredLength !== '') return body.text()
  return readChunks(body, options)
}

/** The body of unknown length, chunk by chunk, within the limit and the deadline. */
async function readChunks (body: Dispatcher.ResponseData['body'], options: { limit: number, deadline: number }): Promise<string> {
  const { limit, deadline } = options
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of body) {
    size += (chunk as Buffer).length
    if (size > limit) {
      body.destroy()
      throw new ResponseTooLargeError(`upstream body over ${limit} bytes`)
    }
    if (performance.now() > deadline) {
      body.destroy()
      throw new DeadlineError('upstream body still arriving at the deadline')
    }
    chunks.push(chunk as Buffer)
  }
  return chunks.length === 1 ? (chunks[0] as Buffer).toString('utf8') : Buffer.concat(chunks, size).toString('utf8')
}

function isJsonContentType (value: string | string[] | undefined): boolean {
  return typeof value === 'string' && /^application\/(?:[\w.+-]+\+)?json\b/i.test(value)
}

export function createUpstreamClient (options: UpstreamClientOptions): { client: UpstreamClient, close (): Promise<void> } {
  const base = new URL(options.baseUrl)
  const origin = base.origin
  const basePath = base.pathname.replace(/\/+$/, '')
  const ownsDispatcher = options.dispatcher === undefined
  const newPool = (): Pool => new Pool(origin, {
    connections: options.connections,
    pipelining: 1,
    keepAliveTimeout: 30_000,
    connect: { timeout: Math.min(10_000, options.timeoutMs) }
  })
  // One pool per kind of call: creates that hang upstream can fill their own
  // connections, never the ones task reads (the call clients make most) need.
  const createDispatcher = options.dispatcher ?? newPool()
  const readDispatcher = options.dispatcher ?? newPool()
  // Built once: the only place the upstream key is ever put into a header.
  const authorization = `Bearer ${options.apiKey}`
  const scrub = createScrubber([options.apiKey])

  /** One attempt, within `budgetMs` (what is left of timeoutMs after earlier attempts). */
  async function sendOnce (call: UpstreamCall, budgetMs: number, traced?: AttemptTrace): Promise<UpstreamAnswer> {
    const started = performance.now()
    const { request } = call
    let response: Dispatcher.ResponseData
    const base = call.body === undefined
      ? { authorization, accept: 'application/json' }
      : { authorization, accept: 'application/json', 'content-type': 'application/json' }
    try {
      response = await withinDeadline(budgetMs, (call.method === 'POST' ? createDispatcher : readDispatcher).request({
        origin,
        path: basePath + call.path,
        method: call.method,
        headers: traced === undefined ? base : { ...traced.headers, ...base },
        body: call.body === undefined ? undefined : JSON.stringify(call.body),
        // Headers within the budget, no pause in the body longer than it, and
        // (readLimited) the whole body before the deadline.
        headersTimeout: budgetMs,
        bodyTimeout: budgetMs
      }))
    } catch (cause) {
      if (request !== undefined) request.upstreamLatencyMs = performance.now() - started
      throw mapUpstreamFailure({ kind: 'transport', cause, timeoutMs: options.timeoutMs })
    }
    const { statusCode, headers } = response
    if (request !== undefined) request.upstreamStatus = statusCode
    traced?.status(statusCode)
    let text: string
    try {
      text = await readLimited(response.body, { limit: options.maxResponseBytes, deadline: started + budgetMs, declaredLength: headers['content-length'] })
    } catch (cause) {
      if (cause instanceof ResponseTooLargeError) throw mapUpstreamFailure({ kind: 'unreadable', cause, statusCode })
      throw mapUpstreamFailure({ kind: 'transport', cause, timeoutMs: options.timeoutMs })
    } finally {
      if (request !== undefined) request.upstreamLatencyMs = performance.now() - started
    }

    let body: unknown
    let parseError: unknown
    if (isJsonContentType(headers['content-type'])) {
      try {
        body = JSON.parse(text)
      } catch (error) {
        parseError = error
      }
    }
    if (statusCode >= 200 && statusCode < 300) {
      if (typeof body !== 'object' || body === null || Array.isArray(body)) {
        throw mapUpstreamFailure({ kind: 'unreadable', cause: parseError ?? new Error(`upstream ${statusCode} answer is not a JSON object (content-type ${String(headers['content-type'])})`), statusCode })
      }
      return { statusCode, body: body as Record<string, unknown> }
    }
    const retryAfter = headers['retry-after']
    throw mapUpstreamFailure({ kind: 'status', statusCode, body, retryAfter: typeof retryAfter === 'string' ? retryAfter : undefined, scrub })
  }

  const retry = options.retry ?? { attempts: 1, baseDelayMs: 0, maxDelayMs: 0 }
  const { breaker, onAttempt, tracing } = options
  // Inside the breaker: an attempt the open breaker refuses never reaches the upstream, so it has no span.
  const tracedOnce = (call: UpstreamCall, budgetMs: number): Promise<UpstreamAnswer> =>
    tracing == null ? sendOnce(call, budgetMs) : tracing.attempt(call, (traced) => sendOnce(call, budgetMs, traced))
  const attempt = (call: UpstreamCall, budgetMs: number): Promise<UpstreamAnswer> =>
    breaker === undefined ? tracedOnce(call, budgetMs) : breaker.run(() => tracedOnce(call, budgetMs))
  async function observedAttempt (call: UpstreamCall, budgetMs: number): Promise<UpstreamAnswer> {
    if (onAttempt === undefined) return await attempt(call, budgetMs)
    const started = performance.now()
    try {
      const answer = await attempt(call, budgetMs)
      onAttempt({ method: call.method, durationMs: performance.now() - started })
      return answer
    } catch (error) {
      onAttempt({ method: call.method, durationMs: performance.now() - started, error })
      throw error
    }
  }
  // Retries outside, breaker inside: every attempt counts for the breaker, and an open breaker ends the retries.
  function send (call: UpstreamCall): Promise<UpstreamAnswer> {
    return callWithRetries({ method: call.method, policy: retry, budgetMs: options.timeoutMs, log: call.request?.log ?? options.log }, (budgetMs) => observedAttempt(call, budgetMs))
  }

  return {
    client: { send },
    async close () {
      if (ownsDispatcher) await Promise.all([createDispatcher.close(), readDispatcher.close()])
    }
  }
}

async function upstreamClientPlugin (fastify: FastifyInstance, options: UpstreamClientOptions): Promise<void> {
  const { client, close } = createUpstreamClient({ breaker: fastify.upstreamBreaker, log: fastify.log, onAttempt: fastify.metrics.upstreamAttempt, tracing: fastify.tracing, ...options })
  fastify.decorate('upstream', client)
  fastify.decorateRequest('upstreamStatus', null)
  fastify.decorateRequest('upstreamLatencyMs', null)
  fastify.addHook('onClose', close)
}

export default fp(upstreamClientPlugin, { name: 'upstream-client', fastify: '5.x', dependencies: ['upstream-breaker', 'metrics', 'tracing'] })
