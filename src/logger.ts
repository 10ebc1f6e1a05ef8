import type { FastifyBaseLogger } from 'fastify'
import { stdSerializers, type Bindings, type ChildLoggerOptions, type LoggerOptions } from 'pino'
import type { Config } from './config.ts'
import { createScrubber } from './features/upstream/scrub.ts'

/** Replaces secrets in every string of a serialized error (message, stack, causes, extra fields). */
function scrubStrings (value: unknown, scrub: (text: string) => string, depth = 0): unknown {
  if (typeof value === 'string') return scrub(value)
  if (depth > 6 || typeof value !== 'object' || value === null) return value
  if (Array.isArray(value)) return value.map((item) => scrubStrings(item, scrub, depth + 1))
  const scrubbed: Record<string, unknown> = {}
  for (const [key, item] of Object.entries(value)) scrubbed[key] = scrubStrings(item, scrub, depth + 1)
  return scrubbed
}

/**
 * pino options for the gateway. No request headers are logged at all;
 * redaction is a second belt for `authorization`/key-named fields, and errors
 * (the one way foreign text, such as an upstream message echoing our key, can
 * reach a log line) are scrubbed of the upstream key and anything key-shaped.
 */
export function loggerOptions (config: Pick<Config, 'logLevel' | 'evolinkApiKey'>): LoggerOptions {
  const scrub = createScrubber([config.evolinkApiKey])
  return {
    level: config.logLevel,
    // Exact paths only: wildcard paths made redaction cost ~4% of the gateway's CPU under load.
    redact: {
      paths: ['req.headers.authorization', 'headers.authorization', 'authorization', 'apiKey', 'evolinkApiKey', 'gatewaySecret', 'webhookSecrets', 'secrets'],
      censor: '[redacted]'
    },
    serializers: {
      req: (request: { method: string, url: string, id: string }) => ({ method: request.method, url: scrub(request.url.split('?')[0] ?? ''), id: request.id }),
      err: (error: Error) => scrubStrings(stdSerializers.err(error), scrub) as ReturnType<typeof stdSerializers.err>
    }
  }
}

/** The field that carries the request id in every line logged for a request (app.ts's LogController). */
export const requestIdLogLabel = 'request_id'

type LogMethod = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'

/**
 * `request.log`, whose pino child (the request id bound) is made only when
 * something logs through it. Fastify made one per request, and most requests
 * log nothing but their access-log line, which request-logging.ts writes through
 * the app's logger with the request id as its first field: the same line.
 * The child cost about 2 µs of each request (docs/benchmark.md).
 */
class RequestLogger {
  readonly #parent: FastifyBaseLogger
  readonly #bindings: Bindings
  readonly #options: ChildLoggerOptions
  #child: FastifyBaseLogger | null = null

  constructor (parent: FastifyBaseLogger, bindings: Bindings, options: ChildLoggerOptions) {
    this.#parent = parent
    this.#bindings = bindings
    this.#options = options
  }

  #logger (): FastifyBaseLogger {
    this.#child ??= this.#parent.child(this.#bindings, this.#options)
    return this.#child
  }

  #log (method: LogMethod, args: unknown[]): void {
    const logger = this.#logger()
    ;(logger[method] as (...args: unknown[]) => void).apply(logger, args)
  }

  get level (): string { return this.#child?.level ?? this.#options.level ?? this.#parent.level }
  set level (level: string) { this.#logger().level = level }
  fatal (...args: unknown[]): void { this.#log('fatal', args) }
  error (...args: unknown[]): void { this.#log('error', args) }
  warn (...args: unknown[]): void { this.#log('warn', args) }
  info (...args: unknown[]): void { this.#log('info', args) }
  debug (...args: unknown[]): void { this.#log('debug', args) }
  trace (...args: unknown[]): void { this.#log('trace', args) }
  silent (...args: unknown[]): void { this.#log('silent', args) }
  child (bindings: Bindings, options?: ChildLoggerOptions): FastifyBaseLogger { return this.#logger().child(bindings, options) }
}

/** Fastify's childLoggerFactory (app.ts): the request's logger, made lazily. */
export function lazyRequestLogger (logger: FastifyBaseLogger, bindings: Bindings, options: ChildLoggerOptions): FastifyBaseLogger {
  return new RequestLogger(logger, bindings, options) as unknown as FastifyBaseLogger
}
