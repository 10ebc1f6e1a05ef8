import { Type, type Static } from 'typebox'
import { TenantDefinition } from '../../schemas/tenants.ts'

export const adminTag = 'admin'

// The tenants file's own field schemas, so that the admin API and TENANTS_FILE accept exactly the
// same tenants (keys aside: in database mode they are made by the API, never sent in).
const { keys: _keys, id: tenantIdSchema, ...settingsFields } = TenantDefinition.properties

export const TenantIdParams = Type.Object({
  tenant_id: Type.String({ ...tenantIdSchema, description: 'The tenant id.' })
}, { additionalProperties: false })

export const KeyParams = Type.Object({
  tenant_id: Type.String({ ...tenantIdSchema, description: 'The tenant id.' }),
  key_id: Type.String({ pattern: '^key_[A-Za-z0-9_-]{1,64}$', description: 'The key id (`key_…`) the create answered; not the key.' })
}, { additionalProperties: false })

/** A tenants-file entry without `keys`; `disabled` creates it disabled. */
export const CreateTenantBody = Type.Object({
  id: tenantIdSchema,
  ...settingsFields,
  disabled: Type.Optional(Type.Boolean({ description: 'Create it disabled: its keys are refused until it is enabled. Default false.' }))
}, {
  additionalProperties: false,
  description: 'The fields of a tenants-file entry (validated by the same schema), without `keys`: keys are created with POST /admin/v1/tenants/{tenant_id}/keys.',
  examples: [{ id: 'example-team', rateLimit: { max: 60, timeWindow: 60_000 }, maxConcurrentTasks: 10 }]
})

/** The whole of a tenant's settings (a replacement, as a tenants-file entry is): a field left out is removed. */
export const UpdateTenantBody = Type.Object({
  ...settingsFields
}, {
  additionalProperties: false,
  description: 'Every setting of the tenant, as in a tenants-file entry without `id` and `keys`; what is left out goes back to its default.',
  examples: [{ rateLimit: { max: 120, timeWindow: 60_000 }, maxConcurrentTasks: 20 }]
})

export const Tenant = Type.Object({
  object: Type.Literal('tenant'),
  id: Type.String(),
  ...settingsFields,
  disabled: Type.Boolean({ description: 'A disabled tenant\'s keys are refused (401), as if it did not exist.' }),
  live_keys: Type.Integer({ description: 'Keys neither revoked nor expired. A tenant without one is not served.' }),
  created_at: Type.String({ format: 'date-time' }),
  updated_at: Type.String({ format: 'date-time' })
})

const pageLimit = Type.Optional(Type.String({ pattern: '^(?:[1-9]|[1-9][0-9]|100)$', description: 'Items per page, 1–100 (default 20).' }))

export const ListTenantsQuery = Type.Object({
  after: Type.Optional(Type.String({ ...tenantIdSchema, description: 'The `last_id` of the previous page: this page starts after it (by id).' })),
  limit: pageLimit
}, { additionalProperties: false })

export const TenantList = Type.Object({
  object: Type.Literal('list'),
  data: Type.Array(Tenant),
  first_id: Type.Union([Type.String(), Type.Null()]),
  last_id: Type.Union([Type.String(), Type.Null()]),
  has_more: Type.Boolean()
})

export const DeletedTenant = Type.Object({
  object: Type.Literal('tenant.deleted'),
  id: Type.String(),
  deleted: Type.Literal(true)
})

const expiresAt = Type.Union([Type.String({ format: 'date-time', description: 'RFC 3339, in the future, e.g. `2027-01-31T00:00:00Z`.' }), Type.Null()], { description: 'When the key stops working; null: never.' })

export const CreateKeyBody = Type.Object({
  label: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'What the key is for (`ci`, `prod-2027`), shown in lists.' })),
  expires_at: Type.Optional(expiresAt)
}, { additionalProperties: false, examples: [{ label: 'ci' }] })

export const UpdateKeyBody = Type.Object({
  expires_at: expiresAt
}, { additionalProperties: false, examples: [{ expires_at: null }] })

export const Key = Type.Object({
  object: Type.Literal('key'),
  id: Type.String({ description: 'The key\'s id, to revoke it or set its expiry (not a secret).' }),
  tenant_id: Type.String(),
  prefix: Type.Union([Type.String(), Type.Null()], { description: 'The key\'s first characters (`vgk_ab12cd34`), to recognise it; null for a key imported as a hash.' }),
  label: Type.Union([Type.String(), Type.Null()]),
  status: Type.Enum(['active', 'expired', 'revoked']),
  created_at: Type.String({ format: 'date-time' }),
  expires_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  revoked_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  last_used_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], { description: 'Within a minute: the gateways write it in batches, off the request path.' })
})

export const CreatedKey = Type.Object({
  ...Key.properties,
  key: Type.String({ description: 'The key itself: shown this once, never stored (only its hash is).' })
})

export const KeyList = Type.Object({
  object: Type.Literal('list'),
  data: Type.Array(Key)
})

export const AuditQuery = Type.Object({
  tenant_id: Type.Optional(Type.String({ ...tenantIdSchema, description: 'Only this tenant\'s changes.' })),
  before: Type.Optional(Type.String({ pattern: '^[1-9][0-9]{0,17}$', description: 'The `last_id` of the previous page: this page has older entries.' })),
  limit: pageLimit
}, { additionalProperties: false })

export const AuditEntry = Type.Object({
  object: Type.Literal('audit_entry'),
  id: Type.String(),
  at: Type.String({ format: 'date-time' }),
  actor: Type.String({ description: 'Which admin token: the start of its hash (`sha256:1a2b3c4d`), or `cli:import`.' }),
  action: Type.String({ description: '`tenant.create`, `tenant.update`, `tenant.disable`, `tenant.enable`, `tenant.delete`, `key.create`, `key.revoke`, `key.expiry`, `tenant.import`, `key.import`.' }),
  tenant_id: Type.Union([Type.String(), Type.Null()]),
  key_id: Type.Union([Type.String(), Type.Null()]),
  before: Type.Unknown({ description: 'The tenant or key before the change (null for a create); webhook secrets as a count, key hashes never.' }),
  after: Type.Unknown({ description: 'After the change (null for a delete).' }),
  request_id: Type.Union([Type.String(), Type.Null()])
})

export const AuditList = Type.Object({
  object: Type.Literal('list'),
  data: Type.Array(AuditEntry),
  first_id: Type.Union([Type.String(), Type.Null()]),
  last_id: Type.Union([Type.String(), Type.Null()]),
  has_more: Type.Boolean()
})

export type CreateTenantBody = Static<typeof CreateTenantBody>
export type UpdateTenantBody = Static<typeof UpdateTenantBody>
