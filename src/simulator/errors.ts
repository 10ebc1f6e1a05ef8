import { STATUS_CODES } from 'node:http'
import type { SimulatorRoute } from './types.ts'

/** The upstream's error envelope: `{"error":{"code","message","type"[,"param"]}}`. */
export interface UpstreamErrorBody {
  error: {
    code: string
    message: string
    type: string
    param?: string
  }
}

export function upstreamError (code: string, message: string, type: string, param?: string): UpstreamErrorBody {
  const error: UpstreamErrorBody['error'] = { code, message, type }
  if (param !== undefined) error.param = param
  return { error }
}

export const unauthorized = (): UpstreamErrorBody =>
  upstreamError('unauthorized', 'Invalid or expired token', 'authentication_error')

export const invalidRequest = (message: string, param?: string): UpstreamErrorBody =>
  upstreamError('invalid_request', message, 'invalid_request_error', param)

export const modelAccessDenied = (model: string): UpstreamErrorBody =>
  upstreamError('model_access_denied', `Token does not have access to model: ${model}`, 'invalid_request_error')

export const invalidTaskId = (): UpstreamErrorBody =>
  upstreamError('invalid_task_id', 'Invalid task ID format, task ID must start with task-unified-', 'invalid_request_error', 'task_id')

export const taskNotFound = (): UpstreamErrorBody =>
  upstreamError('task_not_found', 'Task not found', 'invalid_request_error')

export const notFound = (message: string): UpstreamErrorBody =>
  upstreamError('not_found', message, 'invalid_request_error')

type ErrorTriple = [code: string, message: string, type: string]

// Documented bodies per status (upstream-facts.md); the task query has its own set.
const createDefaults: Record<number, ErrorTriple> = {
  400: ['invalid_request', 'Invalid request parameters', 'invalid_request_error'],
  401: ['unauthorized', 'Invalid or expired token', 'authentication_error'],
  402: ['insufficient_quota', 'Insufficient quota. Please top up your account.', 'insufficient_quota'],
  403: ['model_access_denied', 'Token does not have access to model: veo-3.1-fast-generate-preview', 'invalid_request_error'],
  413: ['request_too_large', 'Request entity too large', 'invalid_request_error'],
  429: ['rate_limit_exceeded', 'Too many requests, please try again later', 'rate_limit_error'],
  500: ['internal_error', 'Internal server error', 'api_error'],
  502: ['upstream_error', 'Upstream service error', 'upstream_error'],
  503: ['service_unavailable', 'No available channel for the requested model', 'api_error'],
  524: ['timeout_error', 'Request timed out', 'timeout_error']
}

const taskDefaults: Record<number, ErrorTriple> = {
  ...createDefaults,
  400: ['invalid_task_id', 'Invalid task ID format, task ID must start with task-unified-', 'invalid_request_error'],
  402: ['quota_exceeded', 'Quota exceeded', 'insufficient_quota'],
  403: ['permission_denied', 'You do not have permission to access this task', 'invalid_request_error'],
  404: ['task_not_found', 'Task not found', 'invalid_request_error'],
  429: ['rate_limit_exceeded', 'Too many requests, please try again later', 'evo_api_error']
}

/**
 * The upstream-style body the simulator sends for `status` on `route` when a
 * fault gives no body: the documented one where there is one, else a generic
 * one (`invalid_request` for 4xx, `internal_error` for 5xx). Below 400: `{}`.
 */
export function defaultBodyFor (status: number, route: SimulatorRoute): UpstreamErrorBody | Record<string, never> {
  if (status < 400) return {}
  const table = route === 'create' ? createDefaults : taskDefaults
  const known = table[status]
  if (known !== undefined) {
    const body = upstreamError(...known)
    if (route === 'task' && status === 400) body.error.param = 'task_id'
    return body
  }
  const message = STATUS_CODES[status] ?? `HTTP ${status}`
  return status < 500
    ? upstreamError('invalid_request', message, 'invalid_request_error')
    : upstreamError('internal_error', message, 'api_error')
}
