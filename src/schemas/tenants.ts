import { Type, type Static } from 'typebox'

export const RateLimitPlan = Type.Object({
  max: Type.Integer({ minimum: 0, description: 'Requests allowed per window.' }),
  timeWindow: Type.Union([
    Type.Integer({ minimum: 1, description: 'Window in milliseconds.' }),
    Type.String({ minLength: 2, description: 'Window as text, e.g. "1 minute".' })
  ])
}, { additionalProperties: false })

export const TenantDefinition = Type.Object({
  id: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$', description: 'Stable tenant id; appears in logs and limits, never a secret.' }),
  keys: Type.Array(Type.String({ pattern: '^sha256:[0-9a-f]{64}$' }), { minItems: 1, description: 'Hashes of the tenant keys (`npm run tenant-key -- <id>` makes one). Several allow rotation.' }),
  rateLimit: Type.Optional(RateLimitPlan),
  readRateLimit: Type.Optional(RateLimitPlan),
  allowedOrigins: Type.Optional(Type.Array(Type.String({ pattern: '^https?://[^/\\s]+$' }), { description: 'Browser origins that get CORS headers for this tenant.' })),
  allowedModels: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { description: 'Models this tenant may use; absent means all the gateway serves.' })),
  webhookSecrets: Type.Optional(Type.Array(Type.String({ pattern: '^whsec_[A-Za-z0-9+/]{32,}={0,2}$' }), { minItems: 1, description: 'Standard Webhooks secrets (`whsec_` + base64 of 24+ random bytes) that sign this tenant\'s webhooks. Each one signs every delivery (one `v1,` signature each), so adding a new secret before removing the old one rotates without a gap. Absent: `callback_url` is refused for this tenant.' }))
}, { additionalProperties: false })

export const TenantsFile = Type.Object({
  tenants: Type.Array(TenantDefinition)
}, { additionalProperties: false })

export type RateLimitPlan = Static<typeof RateLimitPlan>
export type TenantDefinition = Static<typeof TenantDefinition>
export type TenantsFile = Static<typeof TenantsFile>
