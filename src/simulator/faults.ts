import type { SimulatorRoute } from './types.ts'

/** Which calls a fault applies to; `any` matches create, task, file downloads and uploads (never /_simulator). */
export type FaultRoute = SimulatorRoute | 'any'

/** Exactly one behaviour per fault. */
export type FaultBehaviour =
  /** Answer `status` with `body` as JSON (default: the upstream-style error body for that status). */
  | { status: number, body?: unknown, headers?: Record<string, string> }
  /** Wait, then answer normally. */
  | { delayMs: number }
  /** Destroy the socket before any response byte / after the headers and part of the body. */
  | { reset: 'before-headers' | 'after-headers' }
  /** 200 with this raw text (content type application/json unless given). */
  | { garbage: string, contentType?: string }
  /** Never answer (released when the app closes). */
  | { hang: true }
  /** 200, JSON headers, part of a body, then nothing more (released when the app closes). */
  | { bodyNeverEnds: true }
  /** 200 JSON with a body of exactly this many bytes. */
  | { bodyBytes: number }
  /** 400 whose message contains the Authorization header received. */
  | { echoAuthorization: true }
  /** 302 to this URL (a result download that redirects, e.g. to a private address) */
  | { redirect: string }
  /** 200 video/mp4 of exactly this many bytes (a result larger than the gateway takes) */
  | { videoBytes: number }
  /** 200 video/mp4 announcing the whole file, then the socket cut half-way */
  | { truncatedVideo: true }
  /** 200 video/mp4, the whole file, `chunkBytes` (default 1024) every `slowVideo` ms: a download still under way when something happens to it */
  | { slowVideo: number, chunkBytes?: number }

export type Fault = { route: FaultRoute, times?: number } & FaultBehaviour

export type FaultKind = 'status' | 'delayMs' | 'reset' | 'garbage' | 'hang' | 'bodyNeverEnds' | 'bodyBytes' | 'echoAuthorization' | 'redirect' | 'videoBytes' | 'truncatedVideo' | 'slowVideo'

const KINDS: readonly FaultKind[] = ['status', 'delayMs', 'reset', 'garbage', 'hang', 'bodyNeverEnds', 'bodyBytes', 'echoAuthorization', 'redirect', 'videoBytes', 'truncatedVideo', 'slowVideo']
const ROUTES: readonly FaultRoute[] = ['create', 'task', 'file', 'upload', 'any']
const ALLOWED_KEYS: Readonly<Record<FaultKind, readonly string[]>> = {
  status: ['status', 'body', 'headers'],
  delayMs: ['delayMs'],
  reset: ['reset'],
  garbage: ['garbage', 'contentType'],
  hang: ['hang'],
  bodyNeverEnds: ['bodyNeverEnds'],
  bodyBytes: ['bodyBytes'],
  echoAuthorization: ['echoAuthorization'],
  redirect: ['redirect'],
  videoBytes: ['videoBytes'],
  truncatedVideo: ['truncatedVideo'],
  slowVideo: ['slowVideo', 'chunkBytes']
}

export class FaultError extends Error {
  override name = 'FaultError'
}

export function faultKind (fault: Fault): FaultKind {
  const kind = KINDS.find((k) => k in fault)
  if (kind === undefined) throw new FaultError('fault has no behaviour')
  return kind
}

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value)

const isNonNegativeInteger = (value: unknown): value is number =>
  typeof value === 'number' && Number.isInteger(value) && value >= 0

/**
 * Checks a fault (from code or from JSON) and returns a normalised copy with
 * `times` set. Over JSON, `times` may be the string "Infinity" or null for
 * "every matching call". Throws FaultError naming the problem.
 */
export function parseFault (input: unknown): Required<Pick<Fault, 'times'>> & Fault {
  if (!isRecord(input)) throw new FaultError('fault must be an object')
  const route = input.route
  if (!ROUTES.includes(route as FaultRoute)) throw new FaultError(`fault.route must be one of ${ROUTES.join(', ')}`)
  let times = input.times ?? 1
  if (times === 'Infinity' || input.times === null) times = Infinity
  if (times !== Infinity && !(isNonNegativeInteger(times) && times >= 1)) throw new FaultError('fault.times must be a positive integer or Infinity')

  const kinds = KINDS.filter((k) => k in input)
  if (kinds.length !== 1) throw new FaultError(`fault must have exactly one behaviour of ${KINDS.join(', ')}`)
  const kind = kinds[0]!
  const allowed = new Set(['route', 'times', ...ALLOWED_KEYS[kind]])
  const extra = Object.keys(input).find((key) => !allowed.has(key))
  if (extra !== undefined) throw new FaultError(`fault has an unknown property for a ${kind} fault: ${extra}`)

  switch (kind) {
    case 'status':
      if (!(Number.isInteger(input.status) && (input.status as number) >= 200 && (input.status as number) <= 599)) throw new FaultError('fault.status must be an integer 200..599')
      if (input.headers !== undefined && !(isRecord(input.headers) && Object.values(input.headers).every((v) => typeof v === 'string'))) throw new FaultError('fault.headers must map names to strings')
      break
    case 'delayMs':
      if (!isNonNegativeInteger(input.delayMs)) throw new FaultError('fault.delayMs must be a non-negative integer')
      break
    case 'reset':
      if (input.reset !== 'before-headers' && input.reset !== 'after-headers') throw new FaultError('fault.reset must be before-headers or after-headers')
      break
    case 'garbage':
      if (typeof input.garbage !== 'string') throw new FaultError('fault.garbage must be a string')
      if (input.contentType !== undefined && typeof input.contentType !== 'string') throw new FaultError('fault.contentType must be a string')
      break
    case 'bodyBytes':
      if (!isNonNegativeInteger(input.bodyBytes)) throw new FaultError('fault.bodyBytes must be a non-negative integer')
      break
    case 'videoBytes':
      if (!isNonNegativeInteger(input.videoBytes)) throw new FaultError('fault.videoBytes must be a non-negative integer')
      break
    case 'slowVideo':
      if (!isNonNegativeInteger(input.slowVideo)) throw new FaultError('fault.slowVideo must be a non-negative integer (ms between chunks)')
      if (input.chunkBytes !== undefined && !(isNonNegativeInteger(input.chunkBytes) && input.chunkBytes >= 1)) throw new FaultError('fault.chunkBytes must be a positive integer')
      break
    case 'redirect':
      if (typeof input.redirect !== 'string' || !URL.canParse(input.redirect)) throw new FaultError('fault.redirect must be an absolute URL')
      break
    default:
      if (input[kind] !== true) throw new FaultError(`fault.${kind} must be true`)
  }
  return { ...input, times } as Required<Pick<Fault, 'times'>> & Fault
}

export interface PendingFault {
  fault: Fault
  /** Matching calls it still applies to. */
  remaining: number
}

/** FIFO queue of faults; each call takes the first one matching its route. */
export class FaultControl {
  readonly #queue: PendingFault[] = []

  /** Queues a fault (validated; throws FaultError if malformed). */
  push (fault: Fault): void {
    const parsed = parseFault(fault)
    this.#queue.push({ fault: parsed, remaining: parsed.times })
  }

  clear (): void {
    this.#queue.length = 0
  }

  /** Faults still queued, in order. */
  list (): PendingFault[] {
    return this.#queue.map((entry) => ({ fault: entry.fault, remaining: entry.remaining }))
  }

  get size (): number {
    return this.#queue.length
  }

  /** Takes (one use of) the first fault matching `route`, if any. */
  take (route: SimulatorRoute): Fault | undefined {
    const index = this.#queue.findIndex((entry) => entry.fault.route === route || entry.fault.route === 'any')
    if (index === -1) return undefined
    const entry = this.#queue[index]!
    entry.remaining -= 1
    if (entry.remaining <= 0) this.#queue.splice(index, 1)
    return entry.fault
  }
}
