import { randomUUID } from 'node:crypto'
import type { Server } from 'node:http'
import { LogController, type FastifyBaseLogger, type FastifyHttpOptions, type RawRequestDefaultExpression } from 'fastify'
import type { DestinationStream } from 'pino'
import { parseTrustProxy, type Config } from '../config.ts'
import { lazyRequestLogger, loggerOptions, requestIdLogLabel } from '../logger.ts'
import { clientErrorHandler, sendError, type ErrorHandlerOptions } from '../errors/handler.ts'

const requestIdPattern = /^[A-Za-z0-9._:-]{1,128}$/

/** Honours a caller's x-request-id when it is sane, so traces join up; otherwise mints one. */
function requestId (request: RawRequestDefaultExpression): string {
  const presented = request.headers['x-request-id']
  return typeof presented === 'string' && requestIdPattern.test(presented) ? presented : randomUUID()
}

export interface ServerOptionsInput {
  config: Config
  /** merged over the production logger options; `false`: no logging */
  logger?: false | { level?: string, stream?: DestinationStream }
  /** an existing pino logger instead */
  loggerInstance?: FastifyBaseLogger
  /** the error writer's, for errors Fastify meets before routing */
  errors: ErrorHandlerOptions
}

/** Fastify's own options for the gateway: logging, limits, request ids, validation, the errors before routing. */
export function serverOptions (input: ServerOptionsInput): FastifyHttpOptions<Server> {
  const { config, errors } = input
  return {
    ...(input.loggerInstance === undefined
      ? { logger: input.logger === false ? false : { ...loggerOptions(config), ...input.logger } }
      : { loggerInstance: input.loggerInstance }),
    bodyLimit: config.bodyLimitBytes,
    trustProxy: parseTrustProxy(config.trustProxy),
    // request-logging.ts writes one line per request instead of Fastify's two
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel }),
    // request.log's pino child is made when something logs through it (logger.ts)
    childLoggerFactory: lazyRequestLogger,
    requestIdHeader: false,
    genReqId: requestId,
    // above TaskParams' maxLength, so that an overlong id gets the schema's clear 400
    routerOptions: { maxParamLength: 1024 },
    // Bad URL encodings fail before routing: answer them in the one format too.
    frameworkErrors: (error, request, reply) => { sendError(error, request, reply, errors) },
    // Errors before a request exists (oversized headers, malformed HTTP) too.
    clientErrorHandler,
    http: {
      // A request without Host is answered like any other, in the format, instead of Node's empty 400.
      requireHostHeader: false,
      // Node enforces the headers and request timeouts (server.ts) only when it checks
      // connections, every 30 s by default: a slow client would outlive its timeout by that much.
      connectionsCheckingInterval: 1000
    },
    // graceful-shutdown.ts answers requests that arrive while closing, in the one error format
    return503OnClosing: false,
    ajv: {
      customOptions: {
        // Unknown fields are errors (a typo must not silently cost money), types are
        // not coerced ("4" is not 4), and nothing is added: the body is forwarded as sent.
        removeAdditional: false,
        coerceTypes: false,
        useDefaults: false,
        allErrors: false
      }
    }
  }
}
