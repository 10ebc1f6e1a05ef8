import { Type, type Static } from 'typebox'

/** Longest a browser token may live: anything shipped to a browser is public until it expires. */
export const maxTokenTtlSeconds = 7200
export const defaultTokenTtlSeconds = 600

/** A tenant's own id for the person using a page: a token carries it, usage is counted and reported by it. */
export const endUserPattern = '^[A-Za-z0-9._:@-]{1,128}$'

export const CreateTokenBody = Type.Object({
  ttl_seconds: Type.Optional(Type.Integer({ minimum: 30, maximum: maxTokenTtlSeconds, description: `Lifetime in seconds, default ${defaultTokenTtlSeconds} (10 min), at most ${maxTokenTtlSeconds} (2 h).` })),
  operations: Type.Optional(Type.Array(Type.Enum(['create', 'read']), { minItems: 1, maxItems: 2, uniqueItems: true, description: 'What the token may do: `create` (POST /v1/videos/generations), `read` (GET /v1/tasks/{id}, ?wait, /events). Default both.' })),
  max_creates: Type.Optional(Type.Integer({ minimum: 0, maximum: 10000, description: 'Most creates this token may make (counted across replicas with Redis). Default: only the tenant\'s limits.' })),
  models: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 128 }), { minItems: 1, maxItems: 32, uniqueItems: true, description: 'Models the token may use (within the tenant\'s own).' })),
  qualities: Type.Optional(Type.Array(Type.Enum(['720p', '1080p', '4k']), { minItems: 1, maxItems: 3, uniqueItems: true, description: 'Qualities the token may ask for (a create without `quality` is 720p).' })),
  max_duration: Type.Optional(Type.Integer({ minimum: 1, maximum: 600, description: 'Longest video, in seconds, the token may ask for.' })),
  end_user: Type.Optional(Type.String({ pattern: endUserPattern, description: 'Your own id of the person using the page: written to the access log, and counted by the tenant\'s `endUserRateLimit`. Not a secret, not an e-mail address you would not log.' })),
  origin: Type.Optional(Type.String({ pattern: '^https?://[^/\\s]+$', maxLength: 256, description: 'Bind the token to this browser origin (one of the tenant\'s `allowedOrigins`): a request from another origin is refused.' }))
}, {
  additionalProperties: false,
  // Without one, Swagger UI prefills "Try it out" from every property (models ["string"],
  // an origin the tenant does not allow), which the gateway rightly refuses.
  examples: [{ ttl_seconds: 600, operations: ['create', 'read'], max_creates: 5, end_user: 'user-42' }]
})

export const TokenResponse = Type.Object({
  token: Type.String({ description: 'Send as `Authorization: Bearer <token>`; on `/v1/tasks/{id}/events` also accepted as `?token=` (EventSource cannot set headers).' }),
  token_type: Type.Literal('Bearer'),
  expires_at: Type.Integer({ description: 'Unix seconds.' }),
  expires_in: Type.Integer({ description: 'Seconds from now.' })
}, { additionalProperties: false })

export type CreateTokenBody = Static<typeof CreateTokenBody>
export type TokenResponse = Static<typeof TokenResponse>
