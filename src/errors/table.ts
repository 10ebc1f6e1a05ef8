import createError from '@fastify/error'

/**
 * The one table of every error the gateway answers with. Each row becomes an
 * error class (via @fastify/error); the error handler turns any of them into
 * `{"error":{"code","message","type","request_id","param"?}}`. The README and
 * /openapi.json are generated from `description`, and a test checks that every
 * row is documented in both.
 */
export interface ErrorRow {
  statusCode: number
  type: string
  /** util.format template; `%s` rows take their message as the first argument */
  message: string
  /** when the gateway answers with this row (for docs) */
  description: string
  /** 5xx rows log at error level, 4xx rows at info */
}

export const errorTable = {
  invalid_request: {
    statusCode: 400,
    type: 'invalid_request_error',
    message: '%s',
    description: 'Malformed JSON, a schema or cross-field violation, an unknown field, or a field the gateway does not support yet; `param` names the field.'
  },
  unauthorized: {
    statusCode: 401,
    type: 'authentication_error',
    message: 'Missing or invalid API key. Send `Authorization: Bearer <tenant key>`.',
    description: 'Missing, malformed or unknown tenant key.'
  },
  token_expired: {
    statusCode: 401,
    type: 'authentication_error',
    message: '%s',
    description: 'The browser token has expired (the message says when); the page should get a new one from its backend.'
  },
  invalid_token: {
    statusCode: 401,
    type: 'authentication_error',
    message: '%s',
    description: 'The browser token is malformed, tampered with, signed with a key no `GATEWAY_SECRET` derives, or names a tenant that no longer exists.'
  },
  forbidden: {
    statusCode: 403,
    type: 'permission_error',
    message: '%s',
    description: 'The tenant or its browser token may not do this: a model, `n`, `duration` or `quality` the tenant (its `allowedModels`, `maxN`, `maxDuration`, `allowedQualities`) or the token does not allow (`param` names the field), an operation the token does not grant, a token used from another origin than the one it is bound to (`param`: `origin`), a token whose create cap is used up (`param`: `token`), or a tenant key sent from a browser page on another origin without `browserKeys`.'
  },
  not_found: {
    statusCode: 404,
    type: 'invalid_request_error',
    message: '%s',
    description: 'Unknown route, or a task id or webhook delivery id that is unknown, forged or belongs to another tenant (never 403, so existence is not revealed); also the upstream\'s 404, and an upstream callback with an unknown token.'
  },
  link_expired: {
    statusCode: 403,
    type: 'permission_error',
    message: 'This content link expired at %s; read the task again for a fresh one.',
    description: 'A signed content link (`/v1/tasks/{id}/content?…&signature=`) past its `expires`: a new task read mints new links.'
  },
  invalid_link: {
    statusCode: 403,
    type: 'permission_error',
    message: 'This content link is not valid: its signature does not match.',
    description: 'A signed content link whose signature does not match its tenant, task, index and expiry (edited, truncated, or signed with a secret no `GATEWAY_SECRET` lists).'
  },
  task_not_finished: {
    statusCode: 409,
    type: 'invalid_request_error',
    message: 'The task is %s: its videos are not ready yet.',
    description: 'Content of a task that has not completed (pending, processing) or that failed, so it has no video.'
  },
  content_deleted: {
    statusCode: 410,
    type: 'invalid_request_error',
    message: 'The archived videos of this task were deleted (%s).',
    description: 'Content of a task whose archived videos were erased (`DELETE /v1/tasks/{id}/content`) or removed at the end of their retention.'
  },
  range_not_satisfiable: {
    statusCode: 416,
    type: 'invalid_request_error',
    message: 'The Range %s is outside the video (%s bytes).',
    description: 'A `Range` header that selects no byte of the video; the answer carries `Content-Range: bytes */<size>`.'
  },
  callback_task_not_finished: {
    statusCode: 409,
    type: 'invalid_request_error',
    message: 'The task is not finished according to the video provider; nothing was relayed.',
    description: 'Answered to the upstream\'s callback (`POST /callbacks/evolink/{token}`) when a task read does not confirm that the task ended: the callback body is not trusted, and the upstream retries.'
  },
  callback_not_registered: {
    statusCode: 409,
    type: 'invalid_request_error',
    message: 'The task of this callback is not registered yet; nothing was relayed.',
    description: 'Answered to the upstream\'s callback when it arrives before the gateway has recorded the create\'s answer (a task that ended at once): the upstream retries.'
  },
  request_timeout: {
    statusCode: 408,
    type: 'invalid_request_error',
    message: 'The request was not received in time.',
    description: 'The client did not send its whole request within `SERVER_REQUEST_TIMEOUT_MS` (a dribbled body).'
  },
  payload_too_large: {
    statusCode: 413,
    type: 'invalid_request_error',
    message: 'Request body is larger than %d bytes.',
    description: 'Request body over the configured limit (`BODY_LIMIT_BYTES`, 64 KiB by default).'
  },
  image_too_large: {
    statusCode: 413,
    type: 'invalid_request_error',
    message: 'The uploaded image is larger than %d bytes.',
    description: 'OpenAI Videos: an image uploaded as `input_reference` over `IMAGE_UPLOAD_MAX_BYTES` (10 MB by default, the video provider\'s own limit); it was cut off, not kept. `param` is the form field.'
  },
  unsupported_media_type: {
    statusCode: 415,
    type: 'invalid_request_error',
    message: 'Unsupported Content-Type; send `application/json`.',
    description: 'A body that is not `application/json`.'
  },
  expectation_failed: {
    statusCode: 417,
    type: 'invalid_request_error',
    message: 'Only `Expect: 100-continue` is supported.',
    description: 'An `Expect` header other than `100-continue`.'
  },
  rate_limit_exceeded: {
    statusCode: 429,
    type: 'rate_limit_error',
    message: 'Rate limit exceeded, retry in %s.',
    description: 'The tenant (or, without a valid key, the client IP) is over its rate limit; `Retry-After` says when to retry.'
  },
  concurrency_limit_exceeded: {
    statusCode: 429,
    type: 'rate_limit_error',
    message: 'This tenant already has %d tasks running, its limit; create again once one has finished.',
    description: 'The tenant has `maxConcurrentTasks` tasks that the gateway has not yet seen finished (by a task read, a long-poll or an event stream; or `TASK_CONCURRENCY_STALE_MS` after the create). Nothing was sent upstream.'
  },
  budget_exceeded: {
    statusCode: 429,
    type: 'rate_limit_error',
    message: '%s',
    description: 'The create would pass one of the tenant\'s budgets (credits or video-seconds, per UTC day or month); the message names it and when it resets, `Retry-After` is the seconds until then. Nothing was sent upstream.'
  },
  idempotency_key_in_flight: {
    statusCode: 409,
    type: 'invalid_request_error',
    message: 'A request with this Idempotency-Key is still being processed; retry once it has finished.',
    description: 'Another request of this tenant with the same `Idempotency-Key` is still being processed (on any replica); nothing was done. `Retry-After` says when to try again.'
  },
  idempotency_key_reused: {
    statusCode: 422,
    type: 'invalid_request_error',
    message: 'This Idempotency-Key was already used with a different request body; use a new key for a new request.',
    description: 'The tenant used this `Idempotency-Key` within `IDEMPOTENCY_TTL_MS` (24 h) with a different body; `param` is `Idempotency-Key`.'
  },
  header_fields_too_large: {
    statusCode: 431,
    type: 'invalid_request_error',
    message: 'Request headers are too large.',
    description: 'Request headers over Node.js\'s limit (16 KiB).'
  },
  upstream_invalid_request: {
    statusCode: 400,
    type: 'invalid_request_error',
    message: '%s',
    description: 'The upstream answered 400: its own `code` and message are passed on (with anything resembling a key scrubbed).'
  },
  upstream_auth_failed: {
    statusCode: 502,
    type: 'upstream_error',
    message: 'The gateway could not authenticate with the video provider.',
    description: 'The upstream answered 401 or 403: the gateway\'s own key is bad or lacks the model. Details go to the log at error level.'
  },
  upstream_quota_exhausted: {
    statusCode: 503,
    type: 'upstream_error',
    message: 'The video provider account behind this gateway is out of quota.',
    description: 'The upstream answered 402.'
  },
  upstream_rate_limited: {
    statusCode: 429,
    type: 'rate_limit_error',
    message: 'The video provider is rate limiting this gateway; retry later.',
    description: 'The upstream answered 429; `Retry-After` is passed on (or set).'
  },
  upstream_error: {
    statusCode: 502,
    type: 'upstream_error',
    message: 'The video provider failed (status %d).',
    description: 'The upstream answered 5xx (or another unexpected status).'
  },
  upstream_unavailable: {
    statusCode: 502,
    type: 'upstream_error',
    message: 'The video provider could not be reached.',
    description: 'Connection refused, reset or closed before a full answer.'
  },
  upstream_circuit_open: {
    statusCode: 503,
    type: 'upstream_error',
    message: 'The video provider is failing; the gateway is not calling it for the next %d seconds.',
    description: 'The circuit breaker is open after `UPSTREAM_BREAKER_FAILURES` consecutive upstream failures: answered at once, without an upstream call, with `Retry-After`. Its public `code` is `upstream_unavailable`.'
  },
  bad_upstream_response: {
    statusCode: 502,
    type: 'upstream_error',
    message: 'The video provider sent a response the gateway could not read.',
    description: 'The upstream body was not the expected JSON (garbage, wrong content type, wrong shape, or over `UPSTREAM_MAX_RESPONSE_BYTES`).'
  },
  upstream_timeout: {
    statusCode: 504,
    type: 'upstream_error',
    message: 'The video provider did not answer within %d ms.',
    description: 'The upstream was slower than `UPSTREAM_TIMEOUT_MS`.'
  },
  store_unavailable: {
    statusCode: 503,
    type: 'api_error',
    message: 'The gateway\'s shared store is unavailable; retry shortly.',
    description: 'Redis is unreachable and the request needs it: a request with an `Idempotency-Key` (claims fail closed rather than risk a duplicate), a create of a tenant with a budget or `maxConcurrentTasks`, a usage report, or any rate-limited request when `RATE_LIMIT_ON_STORE_ERROR=deny`. `Retry-After` is set.'
  },
  shutting_down: {
    statusCode: 503,
    type: 'api_error',
    message: 'This gateway instance is shutting down; retry the request.',
    description: 'The request reached an instance that had begun its graceful shutdown (on an open keep-alive connection); it was not processed, so retrying it is safe.'
  },
  internal_error: {
    statusCode: 500,
    type: 'api_error',
    message: 'Internal server error.',
    description: 'Anything unexpected; no stack or internals are revealed (the log has them, under the request id).'
  },
  unsupported_variant: {
    statusCode: 400,
    type: 'invalid_request_error',
    message: 'Variant "%s" is not supported by this gateway; supported: video.',
    description: 'OpenAI Videos: `GET /v1/videos/{video_id}/content?variant=thumbnail` or `spritesheet` (the gateway produces no thumbnails or sprite sheets); `param` is `variant`.'
  },
  unsupported_video_operation: {
    statusCode: 400,
    type: 'invalid_request_error',
    message: '%s is not supported by this gateway; supported: POST /v1/videos, GET /v1/videos, GET /v1/videos/{video_id}, GET /v1/videos/{video_id}/content, DELETE /v1/videos/{video_id}.',
    description: 'OpenAI Videos: remix, edits, extensions and characters, which the video provider does not offer.'
  },
  video_not_ready: {
    statusCode: 409,
    type: 'invalid_request_error',
    message: 'Video %s is %s; its content is available once it is completed.',
    description: 'OpenAI Videos: `GET /v1/videos/{video_id}/content` of a video that is not completed (or failed).'
  },
  admin_unauthorized: {
    statusCode: 401,
    type: 'authentication_error',
    message: 'Missing or invalid admin token. Send `Authorization: Bearer <admin token>` (one whose hash ADMIN_TOKENS lists).',
    description: 'Admin API (`/admin/v1`): no admin token, a malformed one, or one whose hash ADMIN_TOKENS does not list (with ADMIN_TOKENS empty, every request).'
  },
  admin_forbidden: {
    statusCode: 403,
    type: 'permission_error',
    message: 'The admin API does not take tenant keys or browser tokens: send an admin token.',
    description: 'Admin API (`/admin/v1`): a tenant key or a browser token was sent instead of an admin token.'
  },
  database_mode_required: {
    statusCode: 409,
    type: 'invalid_request_error',
    message: 'The tenants come from TENANTS_FILE (file mode): edit the file instead. The admin API changes tenants in database mode (DATABASE_URL).',
    description: 'Admin API (`/admin/v1`) on a gateway in file mode, with an admin token.'
  },
  tenant_exists: {
    statusCode: 409,
    type: 'invalid_request_error',
    message: 'Tenant "%s" already exists.',
    description: 'Admin API: a create with the id of an existing tenant (`param`: `id`).'
  },
  key_revoked: {
    statusCode: 409,
    type: 'invalid_request_error',
    message: 'Key "%s" is revoked: it cannot be changed (create a new key).',
    description: 'Admin API: setting the expiry of a revoked key.'
  },
  database_unavailable: {
    statusCode: 503,
    type: 'api_error',
    message: 'The database is unavailable; nothing was changed. Retry shortly.',
    description: 'Admin API in database mode while PostgreSQL is unreachable (tenants and keys keep being served as last loaded). `Retry-After` is set.'
  }
} as const satisfies Record<string, ErrorRow>

export type ErrorCode = keyof typeof errorTable

/** What every gateway error carries besides Error's own fields. */
export interface GatewayError extends Error {
  statusCode: number
  /** the row of `errorTable` */
  tableCode: ErrorCode
  /** the `code` the caller sees; the row's name unless overridden (upstream 400s keep the upstream's code) */
  publicCode: string
  /** the body field at fault, when one is */
  param?: string
  /** headers to send with the error (Retry-After) */
  headers?: Record<string, string>
}

type ErrorConstructor = new (...args: unknown[]) => GatewayError

function buildErrorClasses (): Record<ErrorCode, ErrorConstructor> {
  const classes: Partial<Record<ErrorCode, ErrorConstructor>> = {}
  for (const [code, row] of Object.entries(errorTable) as Array<[ErrorCode, ErrorRow]>) {
    const ErrorClass = createError(`VG_${code.toUpperCase()}`, row.message, row.statusCode)
    Object.defineProperties(ErrorClass.prototype, {
      tableCode: { value: code, writable: false },
      // instances may shadow it (upstream 400 codes)
      publicCode: { value: code, writable: true }
    })
    classes[code] = ErrorClass as unknown as ErrorConstructor
  }
  return classes as Record<ErrorCode, ErrorConstructor>
}

const errorClasses = buildErrorClasses()

export interface GatewayErrorOptions {
  /** util.format arguments of the row's message */
  args?: unknown[]
  param?: string
  publicCode?: string
  headers?: Record<string, string>
  cause?: unknown
}

/** Builds the error of one table row; the one way code in this project makes an error for a caller. */
export function gatewayError (code: ErrorCode, options: GatewayErrorOptions = {}): GatewayError {
  const args = options.args ?? []
  const error = options.cause === undefined
    ? new errorClasses[code](...args)
    : new errorClasses[code](...args, { cause: options.cause })
  if (options.param !== undefined) error.param = options.param
  if (options.publicCode !== undefined) error.publicCode = options.publicCode
  if (options.headers !== undefined) error.headers = options.headers
  return error
}

export function isGatewayError (error: unknown): error is GatewayError {
  return typeof error === 'object' && error !== null && typeof (error as GatewayError).tableCode === 'string'
}

/**
 * 503 store_unavailable with `Retry-After: 5`: the one way every feature that fails
 * closed without Redis (idempotency, budgets, token caps, webhooks, rate limits on
 * `deny`) says so. Redis reconnects within seconds, so a short retry is the right advice.
 */
export function storeUnavailable (cause: unknown): GatewayError {
  return gatewayError('store_unavailable', { cause, headers: { 'retry-after': '5' } })
}
