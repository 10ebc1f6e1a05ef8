import { gatewayError, type GatewayError } from '../../errors/table.ts'
import { parseRetryAfter } from '../../http/retry-after.ts'

/**
 * The one mapping from what can go wrong with an upstream call (an undici
 * error, or an answer with a non-2xx status) to a row of the error table.
 * The original error is kept as `cause` for the log; nothing the upstream
 * said reaches the caller except a 400's code and scrubbed message.
 */
export type UpstreamFailure =
  | { kind: 'transport', cause: unknown, timeoutMs: number }
  | { kind: 'unreadable', cause: unknown, statusCode: number }
  | { kind: 'status', statusCode: number, body: unknown, retryAfter: string | undefined, scrub: (text: string) => string }

/** undici / Node error codes that mean "we never got a full answer" */
const timeoutCodes = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT'])

export interface UpstreamErrorDetail {
  upstreamStatus?: number
  upstreamCode?: string
  upstreamMessage?: string
  /** the upstream's Retry-After, raw (retry.ts honours it on 503s) */
  retryAfter?: string
}

export function mapUpstreamFailure (failure: UpstreamFailure): GatewayError & { upstreamDetail?: UpstreamErrorDetail } {
  switch (failure.kind) {
    case 'transport': {
      const { cause } = failure
      if (isTimeout(cause)) return gatewayError('upstream_timeout', { args: [failure.timeoutMs], cause })
      // Refused, reset, closed, DNS, connect timeout, TLS: the upstream could not be reached.
      return gatewayError('upstream_unavailable', { cause })
    }
    case 'unreadable':
      return Object.assign(gatewayError('bad_upstream_response', { cause: failure.cause }), { upstreamDetail: { upstreamStatus: failure.statusCode } })
    case 'status':
      return mapStatus(failure)
  }
}

function isTimeout (cause: unknown): boolean {
  if (typeof cause !== 'object' || cause === null) return false
  const { name, code } = cause as { name?: string, code?: string }
  return name === 'TimeoutError' || (code !== undefined && timeoutCodes.has(code))
}

function upstreamErrorFields (body: unknown): { code?: string, message?: string, param?: string } {
  if (typeof body !== 'object' || body === null) return {}
  const error = (body as { error?: unknown }).error
  if (typeof error !== 'object' || error === null) return {}
  const { code, message, param } = error as Record<string, unknown>
  return {
    code: typeof code === 'string' && /^[a-z0-9_]{1,64}$/i.test(code) ? code : undefined,
    message: typeof message === 'string' ? message : undefined,
    param: typeof param === 'string' && /^[a-z0-9_.[\]]{1,64}$/i.test(param) ? param : undefined
  }
}

const maxPassedMessageLength = 500

function mapStatus (failure: Extract<UpstreamFailure, { kind: 'status' }>): GatewayError & { upstreamDetail: UpstreamErrorDetail } {
  const { statusCode, scrub } = failure
  const fields = upstreamErrorFields(failure.body)
  const upstreamDetail: UpstreamErrorDetail = {
    upstreamStatus: statusCode,
    upstreamCode: fields.code,
    upstreamMessage: fields.message === undefined ? undefined : scrub(fields.message).slice(0, maxPassedMessageLength),
    retryAfter: failure.retryAfter?.slice(0, 64)
  }
  const withDetail = (error: GatewayError): GatewayError & { upstreamDetail: UpstreamErrorDetail } => Object.assign(error, { upstreamDetail })

  if (statusCode === 400) {
    return withDetail(gatewayError('upstream_invalid_request', {
      args: [upstreamDetail.upstreamMessage ?? 'The video provider rejected the request.'],
      publicCode: fields.code ?? 'invalid_request',
      param: fields.param
    }))
  }
  if (statusCode === 401 || statusCode === 403) return withDetail(gatewayError('upstream_auth_failed'))
  if (statusCode === 402) return withDetail(gatewayError('upstream_quota_exhausted'))
  if (statusCode === 404) return withDetail(gatewayError('not_found', { args: ['Task not found.'] }))
  if (statusCode === 429) {
    return withDetail(gatewayError('upstream_rate_limited', { headers: { 'retry-after': sanitizeRetryAfter(failure.retryAfter) } }))
  }
  return withDetail(gatewayError('upstream_error', { args: [statusCode] }))
}

const defaultRetryAfterSeconds = '5'

/** Passes on a delay in seconds (bounded), or an HTTP date; anything else becomes the default. */
function sanitizeRetryAfter (value: string | undefined): string {
  if (value === undefined) return defaultRetryAfterSeconds
  const trimmed = value.trim()
  if (/^\d{1,5}$/.test(trimmed)) return String(Math.min(Number(trimmed), 3600))
  if (parseRetryAfter(trimmed) !== undefined) return new Date(trimmed).toUTCString()
  return defaultRetryAfterSeconds
}
