import { randomUUID } from 'node:crypto'
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import fp from 'fastify-plugin'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { errorTable, gatewayError, isGatewayError, type ErrorCode, type GatewayError } from './table.ts'
import type { ErrorResponse } from '../schemas/errors.ts'

export interface ErrorHandlerOptions {
  bodyLimitBytes: number
  /** per client IP, for unknown routes (so scanning costs the scanner) */
  notFoundRateLimit: { max: number, timeWindowMs: number }
}

interface ValidationIssue {
  keyword: string
  instancePath: string
  message?: string
  params: Record<string, unknown>
}

function paramOf (issue: ValidationIssue): string | undefined {
  const path = issue.instancePath.split('/').filter(Boolean)
  if (issue.keyword === 'required') path.push(String(issue.params.missingProperty))
  if (issue.keyword === 'additionalProperties') path.push(String(issue.params.additionalProperty))
  if (path.length === 0) return undefined
  return path.map((part, index) => /^\d+$/.test(part) ? `[${part}]` : (index === 0 ? part : `.${part}`)).join('')
}

function headerName (name: string | undefined): string | undefined {
  return name?.replace(/(^|-)([a-z])/g, (_match, dash: string, letter: string) => dash + letter.toUpperCase())
}

function describeIssue (issue: ValidationIssue, context: string, param: string | undefined): string {
  switch (issue.keyword) {
    case 'required':
      return `Missing required field "${String(issue.params.missingProperty)}".`
    case 'additionalProperties':
      return `Unknown field "${String(issue.params.additionalProperty)}"${param !== undefined && param.includes('.') ? ` in "${param.slice(0, param.lastIndexOf('.'))}"` : ''}: check its spelling.`
    case 'enum':
      return `"${param ?? context}" must be one of: ${(issue.params.allowedValues as unknown[]).map((value) => JSON.stringify(value)).join(', ')}.`
    default:
      return param === undefined ? `Request ${context} ${issue.message ?? 'is invalid'}.` : `"${param}" ${issue.message ?? 'is invalid'}.`
  }
}

function fromValidation (error: FastifyError): GatewayError {
  const issue = (error.validation as ValidationIssue[])[0]
  if (issue === undefined) return gatewayError('invalid_request', { args: ['Request is invalid.'], cause: error })
  const context = error.validationContext ?? 'body'
  // Headers are validated by their lower-case names; the caller knows them as HTTP spells them (Idempotency-Key).
  const param = context === 'headers' ? headerName(paramOf(issue)) : paramOf(issue)
  if (context === 'body' && param === undefined && issue.keyword === 'type') {
    return gatewayError('invalid_request', { args: ['Request body must be a JSON object.'], cause: error })
  }
  return gatewayError('invalid_request', { args: [describeIssue(issue, context, param)], param, cause: error })
}

const fastifyCodeToRow: Record<string, (error: FastifyError, options: ErrorHandlerOptions) => GatewayError> = {
  FST_ERR_CTP_BODY_TOO_LARGE: (error, options) => gatewayError('payload_too_large', { args: [options.bodyLimitBytes], cause: error }),
  FST_ERR_CTP_INVALID_MEDIA_TYPE: (error) => gatewayError('unsupported_media_type', { cause: error }),
  FST_ERR_CTP_INVALID_JSON_BODY: (error) => gatewayError('invalid_request', { args: ['Request body is not valid JSON.'], cause: error }),
  FST_ERR_CTP_EMPTY_JSON_BODY: (error) => gatewayError('invalid_request', { args: ['Request body is empty; send a JSON object.'], cause: error })
}

/** Whatever was thrown → a row of the error table. */
export function toGatewayError (error: unknown, options: ErrorHandlerOptions): GatewayError {
  if (isGatewayError(error)) return error
  const fastifyError = error as FastifyError
  if (fastifyError?.validation !== undefined) return fromValidation(fastifyError)
  const byCode = fastifyError?.code === undefined ? undefined : fastifyCodeToRow[fastifyError.code]
  if (byCode !== undefined) return byCode(fastifyError, options)
  const status = fastifyError?.statusCode
  if (typeof status === 'number' && status >= 400 && status < 500) {
    // Framework-level client errors (bad URL, content-length mismatch, JSON with __proto__...):
    // their messages are Fastify's own and safe to show.
    if (status === 404) return gatewayError('not_found', { args: ['Not found.'], cause: error })
    if (status === 413) return gatewayError('payload_too_large', { args: [options.bodyLimitBytes], cause: error })
    if (status === 415) return gatewayError('unsupported_media_type', { cause: error })
    const message = error instanceof SyntaxError ? 'Request body is not valid JSON.' : (fastifyError.message || 'Bad request.')
    return gatewayError('invalid_request', { args: [message], cause: error })
  }
  return gatewayError('internal_error', { cause: error })
}

export function errorBody (error: GatewayError, requestId: string): ErrorResponse {
  const body: ErrorResponse = {
    error: {
      code: error.publicCode,
      message: error.message,
      type: errorTable[error.tableCode].type,
      request_id: requestId
    }
  }
  if (error.param !== undefined) body.error.param = error.param
  return body
}

/** How a failure is logged, wherever it is answered: 5xx at error with the cause, 4xx at info. */
export function logFailure (request: FastifyRequest, error: unknown, gatewayFailure: GatewayError): void {
  const detail = (gatewayFailure as { upstreamDetail?: unknown }).upstreamDetail
  if (gatewayFailure.statusCode >= 500) {
    request.log.error({ err: error, upstream: detail, code: gatewayFailure.publicCode }, 'request failed')
  } else {
    request.log.info({ code: gatewayFailure.publicCode, param: gatewayFailure.param, upstream: detail }, gatewayFailure.message)
  }
}

/**
 * The one place an error becomes an answer: used by the error handler and by
 * Fastify's `frameworkErrors` (bad URLs, which fail before any hook runs).
 */
export function sendError (error: unknown, request: FastifyRequest, reply: FastifyReply, options: ErrorHandlerOptions): FastifyReply {
  const gatewayFailure = toGatewayError(error, options)
  request.errorCode = gatewayFailure.tableCode
  logFailure(request, error, gatewayFailure)
  if (gatewayFailure.headers !== undefined) reply.headers(gatewayFailure.headers)
  return reply.code(gatewayFailure.statusCode).header('x-request-id', request.id).send(errorBody(gatewayFailure, request.id))
}

/**
 * Errors Node's HTTP parser raises before any request exists (headers too large,
 * malformed HTTP, a request that was not received in time): answered in the
 * one format, with a request id, on the raw socket, which is then closed.
 */
export function clientErrorHandler (error: NodeJS.ErrnoException, socket: Duplex): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return
  const gatewayFailure = error.code === 'HPE_HEADER_OVERFLOW'
    ? gatewayError('header_fields_too_large', { cause: error })
    : error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? gatewayError('request_timeout', { cause: error })
      : gatewayError('invalid_request', { args: ['Malformed HTTP request.'], cause: error })
  // A pipelining client may have sent a whole valid request before the
  // malformed bytes: that request's answer is still being produced on this
  // socket. Writing the 400 now would put it first, where the client reads it
  // as the answer to the valid request (whose work was done), so the 400 waits
  // for it. If the in-flight request's own body is what broke, the 400 is its
  // answer and goes out at once.
  const inFlight = (socket as Duplex & { _httpMessage?: ServerResponse | null })._httpMessage
  if (inFlight != null && !inFlight.writableFinished && inFlight.req.complete) {
    inFlight.once('close', () => { answerAndClose(socket, gatewayFailure) })
    return
  }
  answerAndClose(socket, gatewayFailure)
}

function answerAndClose (socket: Duplex, error: GatewayError): void {
  if (socket.writable) writeRawError(socket, error)
  socket.destroy()
}

function writeRawError (socket: Duplex, error: GatewayError): void {
  const requestId = randomUUID()
  const body = JSON.stringify(errorBody(error, requestId))
  socket.write(`HTTP/1.1 ${error.statusCode} ${STATUS_CODES[error.statusCode] ?? ''}\r\n` +
    `content-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
    `x-request-id: ${requestId}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n${body}`)
}

/** `Expect` values other than 100-continue (Node would answer an empty 417). */
export function expectationHandler (_request: IncomingMessage, response: ServerResponse): void {
  const requestId = randomUUID()
  const body = JSON.stringify(errorBody(gatewayError('expectation_failed'), requestId))
  response.writeHead(417, { 'content-type': 'application/json; charset=utf-8', 'x-request-id': requestId, 'cache-control': 'no-store', connection: 'close' })
  response.end(body)
}

declare module 'fastify' {
  interface FastifyRequest {
    /** the error-table row this request was answered with, if it failed (metrics count rejections by it) */
    errorCode: ErrorCode | null
  }
}

async function errorHandlerPlugin (fastify: FastifyInstance, options: ErrorHandlerOptions): Promise<void> {
  fastify.decorateRequest('errorCode', null)
  fastify.setErrorHandler(function handleError (error: unknown, request: FastifyRequest, reply: FastifyReply) {
    return sendError(error, request, reply, options)
  })

  fastify.setNotFoundHandler({
    preHandler: fastify.rateLimit({ max: options.notFoundRateLimit.max, timeWindow: options.notFoundRateLimit.timeWindowMs })
  }, async function notFound (request) {
    const path = request.url.split('?')[0]?.slice(0, 200) ?? ''
    throw gatewayError('not_found', { args: [`No route ${request.method} ${path}.`] })
  })
}

export default fp(errorHandlerPlugin, { name: 'error-handler', fastify: '5.x', dependencies: ['rate-limit'] })
