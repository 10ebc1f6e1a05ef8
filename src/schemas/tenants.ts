import { Type, type Static } from 'typebox'

export const RateLimitPlan = Type.Object({
  max: Type.Integer({ minimum: 0, description: 'Requests allowed per window.' }),
  timeWindow: Type.Union([
    Type.Integer({ minimum: 1, description: 'Window in milliseconds.' }),
    Type.String({ minLength: 2, description: 'Window as text, e.g. "1 minute".' })
  ])
}, { additionalProperties: false })

export const TenantBudget = Type.Object({
  creditsPerDay: Type.Optional(Type.Number({ minimum: 0, description: 'Upstream credits this tenant may spend per UTC day.' })),
  creditsPerMonth: Type.Optional(Type.Number({ minimum: 0, description: 'Upstream credits this tenant may spend per UTC calendar month.' })),
  videoSecondsPerDay: Type.Optional(Type.Integer({ minimum: 0, description: 'Seconds of video (duration × n) this tenant may order per UTC day.' })),
  videoSecondsPerMonth: Type.Optional(Type.Integer({ minimum: 0, description: 'Seconds of video (duration × n) this tenant may order per UTC calendar month.' }))
}, { additionalProperties: false, description: 'Spending caps; a create that would pass one gets 429 budget_exceeded until its window resets.' })

export const TenantArchive = Type.Object({
  enabled: Type.Optional(Type.Boolean({ description: 'Archive this tenant\'s finished videos (default ARCHIVE_ENABLED).' })),
  retentionDays: Type.Optional(Type.Integer({ minimum: 0, maximum: 36500, description: 'Days its archived videos are kept; 0 until deleted (default ARCHIVE_RETENTION_DAYS).' })),
  rewriteResults: Type.Optional(Type.Boolean({ description: 'Task reads list signed gateway links in `results` once archived (default ARCHIVE_REWRITE_RESULTS).' }))
}, { additionalProperties: false, description: 'The archive of this tenant\'s videos (needs ARCHIVE_DIR or ARCHIVE_S3_BUCKET).' })

export const WebhookEndpoint = Type.Object({
  url: Type.String({ format: 'uri', maxLength: 2048, description: 'Where the events go (the same SSRF rules as `callback_url`: public https, or WEBHOOK_ALLOWED_DESTINATIONS).' }),
  events: Type.Array(Type.Enum(['video.completed', 'video.failed']), { minItems: 1, uniqueItems: true, description: 'Which task endings are sent.' }),
  format: Type.Enum(['openai', 'native'], { description: '`openai`: OpenAI\'s event (`{ id, object: "event", type, created_at, data: { id } }`, which `client.webhooks.unwrap()` of the `openai` SDK verifies); `native`: the payload a `callback_url` gets.' })
}, { additionalProperties: false })

export const TenantDefinition = Type.Object({
  id: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$', description: 'Stable tenant id; appears in logs and limits, never a secret.' }),
  keys: Type.Array(Type.String({ pattern: '^sha256:[0-9a-f]{64}$' }), { minItems: 1, description: 'Hashes of the tenant keys (`npm run tenant-key -- <id>` makes one). Several allow rotation.' }),
  rateLimit: Type.Optional(RateLimitPlan),
  readRateLimit: Type.Optional(RateLimitPlan),
  allowedOrigins: Type.Optional(Type.Array(Type.String({ pattern: '^https?://[^/\\s]+$' }), { description: 'Browser origins that get CORS headers for this tenant.' })),
  allowedModels: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { description: 'Models this tenant may use; absent means all the gateway serves.' })),
  browserKeys: Type.Optional(Type.Boolean({ description: 'Accept this tenant\'s keys from browser pages on other origins (a request with a foreign `Origin`). Default false: a key shipped to a browser is public, so browsers use short-lived tokens (POST /v1/tokens).' })),
  // Creates per end user (the `end_user` of a browser token) per window, on top of the tenant's own limit.
  endUserRateLimit: Type.Optional(RateLimitPlan),
  maxConcurrentTasks: Type.Optional(Type.Integer({ minimum: 1, description: 'Tasks of this tenant not yet seen finished at once; one more create gets 429 concurrency_limit_exceeded.' })),
  budget: Type.Optional(TenantBudget),
  maxN: Type.Optional(Type.Integer({ minimum: 1, description: 'Largest `n` (videos per create) this tenant may ask for.' })),
  maxDuration: Type.Optional(Type.Integer({ minimum: 1, description: 'Longest `duration` (seconds) this tenant may ask for.' })),
  allowedQualities: Type.Optional(Type.Array(Type.Enum(['720p', '1080p', '4k']), { minItems: 1, description: 'Qualities this tenant may ask for (the upstream default, 720p, counts when none is sent); absent means all.' })),
  webhookSecrets: Type.Optional(Type.Array(Type.String({ pattern: '^whsec_[A-Za-z0-9+/]{32,}={0,2}$' }), { minItems: 1, description: 'Standard Webhooks secrets (`whsec_` + base64 of 24+ random bytes) that sign this tenant\'s webhooks. Each one signs every delivery (one `v1,` signature each), so adding a new secret before removing the old one rotates without a gap. Absent: `callback_url` is refused for this tenant.' })),
  archive: Type.Optional(TenantArchive),
  webhookEndpoints: Type.Optional(Type.Array(WebhookEndpoint, { maxItems: 10, description: 'Tenant-level webhook endpoints: every task of the tenant that the gateway sees finish (a read, a long-poll, an event stream, a confirmed callback) is sent to each endpoint that asks for its event, signed with `webhookSecrets` (which it needs), on the same queue and retries as `callback_url` deliveries.' }))
}, { additionalProperties: false })

export const TenantsFile = Type.Object({
  tenants: Type.Array(TenantDefinition)
}, { additionalProperties: false })

export type RateLimitPlan = Static<typeof RateLimitPlan>
export type TenantBudget = Static<typeof TenantBudget>
export type TenantArchive = Static<typeof TenantArchive>
export type TenantDefinition = Static<typeof TenantDefinition>
export type WebhookEndpoint = Static<typeof WebhookEndpoint>
export type TenantsFile = Static<typeof TenantsFile>
