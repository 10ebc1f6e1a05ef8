import { Type } from 'typebox'

/** The request headers of a route that honours Idempotency-Key (validation and /openapi.json). */
export const IdempotencyHeaders = Type.Object({
  'idempotency-key': Type.Optional(Type.String({
    minLength: 1,
    maxLength: 255,
    description: 'Makes a retry safe: the same key with the same body within 24 h (`IDEMPOTENCY_TTL_MS`) replays the first answer (status and body, with `Idempotent-Replayed: true`) without a second upstream call. The same key with another body: 422 `idempotency_key_reused`; while the first request is still running: 409 `idempotency_key_in_flight`. Keys are per tenant; use a fresh random value (a UUID) per distinct request.'
  }))
})
