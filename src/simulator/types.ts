import type { Readable } from 'node:stream'
import type { FastifyInstance, FastifyServerOptions } from 'fastify'
import type { FaultControl } from './faults.ts'
import type { SimulatorCalls } from './calls.ts'
import type { TaskStore } from './tasks.ts'
import type { OpenResponses } from './fault-responder.ts'
import type { CreateBodyValidator } from './validation.ts'
import type { CallbackSender } from './callbacks.ts'
import type { UploadStore } from './uploads.ts'

/** Options of {@link buildSimulator}. Only `apiKey` is required. */
export interface SimulatorOptions {
  /** The one bearer key the simulator accepts (upstream keys look like `sk-evo-…`). */
  apiKey: string
  /** Time from create to completed, ms (default 20000): pending for the first 10 %, then processing. */
  taskDurationMs?: number
  /** Models it serves (default: veo-3.1-fast-generate-preview, veo-3.1-generate-preview); others get 400. */
  models?: string[]
  /** Models the key may not use: 403 model_access_denied. */
  deniedModels?: string[]
  /** Clock in ms since the epoch (default Date.now); inject one to drive task lifecycles in tests. */
  now?: () => number
  /**
   * Accept callback_url on loopback and private addresses, and over http (the
   * real upstream refuses them): the gateway's own callback route in tests and
   * in simulator mode.
   */
  allowPrivateCallbackUrls?: boolean
  /** Waits before each callback retry (default 1 s, 2 s, 4 s, as the upstream). */
  callbackRetryDelaysMs?: number[]
  /** Size of every result file, bytes (default: the sample MP4's ~10 KB; more is the same video padded, streamed). */
  resultFileBytes?: number
  /** Fastify logger option (default false). */
  logger?: FastifyServerOptions['logger']
}

/** What {@link buildSimulator} returns: the Fastify app (never listening) and its controls. */
export interface SimulatorInstance {
  app: FastifyInstance
  /** Fault injection queue (FIFO, per route). */
  faults: FaultControl
  /** Live counters and a log of recent calls to the upstream routes. */
  calls: SimulatorCalls
  /** The task store (read-only use intended). */
  tasks: TaskStore
  /** Calls made to callback_url (`attempts`, oldest first). */
  callbacks: CallbackSender
  /** Files uploaded to the simulated files API. */
  uploads: UploadStore
  /** Forgets faults, calls and tasks. */
  reset (): void
}

/** The upstream routes a call (and a fault) can belong to. `file` is a download (a result, an uploaded image), `upload` the files API. */
export type SimulatorRoute = 'create' | 'task' | 'file' | 'upload'

/** What the route plugins share (internal). */
export interface SimulatorContext {
  apiKey: string
  now: () => number
  faults: FaultControl
  calls: SimulatorCalls
  tasks: TaskStore
  open: OpenResponses
  validateCreate: CreateBodyValidator
  callbacks: CallbackSender
  uploads: UploadStore
  /** the result file every completed task serves */
  resultFile: { size: number, body (): Readable }
  reset (): void
}
