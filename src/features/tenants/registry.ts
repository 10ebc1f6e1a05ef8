import { hash, randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { parse as parseDuration } from '@lukeed/ms'
import { TenantsFile, type RateLimitPlan, type TenantArchive, type TenantBudget, type TenantDefinition, type WebhookEndpoint } from '../../schemas/tenants.ts'
import { firstSchemaProblem } from '../../errors/schema-errors.ts'

/** Limits of creates unless the tenant sets `rateLimit`. */
export const defaultCreateRateLimit = { max: 60, timeWindowMs: 60_000 }
/** Task reads are polled far more often than creates: a higher default. */
export const defaultReadRateLimit = { max: 600, timeWindowMs: 60_000 }

export interface ResolvedRateLimit {
  max: number
  timeWindowMs: number
}

/** A tenant as the running gateway sees it (keys are gone: only their hashes index it). */
export interface Tenant {
  id: string
  rateLimit: ResolvedRateLimit
  readRateLimit: ResolvedRateLimit
  allowedOrigins: ReadonlySet<string> | null
  allowedModels: ReadonlySet<string> | null
  /** whether the tenant's keys are accepted from browser pages on other origins */
  browserKeys: boolean
  /** creates per browser-token end user; null: no per-end-user limit */
  endUserRateLimit: ResolvedRateLimit | null
  /** tasks not yet seen finished at once; null: no cap */
  maxConcurrentTasks: number | null
  /** spending caps per UTC day and month; null: none */
  budget: Readonly<TenantBudget> | null
  maxN: number | null
  maxDuration: number | null
  allowedQualities: ReadonlySet<string> | null
  /** Standard Webhooks `whsec_` secrets; empty: no webhooks for this tenant */
  webhookSecrets: readonly string[]
  /** the tenant's own archive settings; what it leaves out follows the ARCHIVE_* defaults */
  archive: Readonly<TenantArchive>
  /** tenant-level endpoints that hear of every task's end (webhooks/plugin.ts) */
  webhookEndpoints: readonly WebhookEndpoint[]
}

export interface TenantRegistry {
  tenants: readonly Tenant[]
  /** `sha256:<hex>` of a presented key → its tenant */
  byKeyHash: ReadonlyMap<string, Tenant>
  /** tenant id → tenant (browser tokens name their tenant) */
  byId: ReadonlyMap<string, Tenant>
}

export class TenantsFileError extends Error {
  override name = 'TenantsFileError'
}

/** `sha256:<hex>`: the only form in which a tenant key is ever stored. */
export function tenantKeyHash (key: string): string {
  // crypto.hash: one call, no Hash object; it runs on every authenticated request.
  return 'sha256:' + hash('sha256', key, 'hex')
}

/** A new random tenant key: 32 bytes of entropy, prefixed so that leaks are easy to grep for. */
export function generateTenantKey (): string {
  return 'vgk_' + randomBytes(32).toString('base64url')
}

/** A new Standard Webhooks signing secret: `whsec_` and base64 of 32 random bytes (both sides keep it). */
export function generateWebhookSecret (): string {
  return 'whsec_' + randomBytes(32).toString('base64')
}

function resolveRateLimit (plan: RateLimitPlan | undefined, fallback: ResolvedRateLimit, where: string): ResolvedRateLimit {
  if (plan === undefined) return fallback
  const timeWindowMs = typeof plan.timeWindow === 'number' ? plan.timeWindow : parseDuration(plan.timeWindow)
  if (timeWindowMs === undefined || !Number.isFinite(timeWindowMs) || timeWindowMs <= 0) {
    throw new TenantsFileError(`${where}.timeWindow: cannot read "${String(plan.timeWindow)}" as a duration`)
  }
  return { max: plan.max, timeWindowMs }
}

export function buildTenantRegistry (definitions: readonly TenantDefinition[]): TenantRegistry {
  const problem = firstSchemaProblem(TenantsFile, { tenants: definitions })
  if (problem !== null) throw new TenantsFileError(`${problem.path} ${problem.message}`)
  const tenants: Tenant[] = []
  const byKeyHash = new Map<string, Tenant>()
  const ids = new Set<string>()
  definitions.forEach((definition, index) => {
    const where = `tenants[${index}]`
    if (ids.has(definition.id)) throw new TenantsFileError(`${where}.id: duplicate tenant id "${definition.id}"`)
    ids.add(definition.id)
    const tenant: Tenant = {
      id: definition.id,
      rateLimit: resolveRateLimit(definition.rateLimit, defaultCreateRateLimit, `${where}.rateLimit`),
      readRateLimit: resolveRateLimit(definition.readRateLimit, defaultReadRateLimit, `${where}.readRateLimit`),
      allowedOrigins: definition.allowedOrigins === undefined ? null : new Set(definition.allowedOrigins),
      allowedModels: definition.allowedModels === undefined ? null : new Set(definition.allowedModels),
      browserKeys: definition.browserKeys ?? false,
      endUserRateLimit: definition.endUserRateLimit === undefined ? null : resolveRateLimit(definition.endUserRateLimit, defaultCreateRateLimit, `${where}.endUserRateLimit`),
      maxConcurrentTasks: definition.maxConcurrentTasks ?? null,
      budget: definition.budget === undefined || Object.keys(definition.budget).length === 0 ? null : { ...definition.budget },
      maxN: definition.maxN ?? null,
      maxDuration: definition.maxDuration ?? null,
      allowedQualities: definition.allowedQualities === undefined ? null : new Set(definition.allowedQualities),
      webhookSecrets: definition.webhookSecrets ?? [],
      archive: { ...definition.archive },
      webhookEndpoints: definition.webhookEndpoints ?? []
    }
    if (tenant.webhookEndpoints.length > 0 && tenant.webhookSecrets.length === 0) {
      throw new TenantsFileError(`${where}.webhookEndpoints: needs webhookSecrets to sign the events`)
    }
    for (const keyHash of definition.keys) {
      if (byKeyHash.has(keyHash)) throw new TenantsFileError(`${where}.keys: a key hash is listed twice`)
      byKeyHash.set(keyHash, tenant)
    }
    tenants.push(tenant)
  })
  return { tenants, byKeyHash, byId: new Map(tenants.map((tenant) => [tenant.id, tenant])) }
}

export function readTenantsFile (path: string): TenantDefinition[] {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (error) {
    throw new TenantsFileError(`TENANTS_FILE: cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? 'error'})`, { cause: error })
  }
  return parseTenantsFile(text, path)
}

/** The tenants of a tenants file's text, checked against the schema (start-up and reloads alike). */
export function parseTenantsFile (text: string, path: string): TenantDefinition[] {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (error) {
    throw new TenantsFileError(`TENANTS_FILE: ${path} is not valid JSON (${(error as Error).message})`, { cause: error })
  }
  const problem = firstSchemaProblem(TenantsFile, parsed)
  if (problem !== null) throw new TenantsFileError(`TENANTS_FILE: ${path}: ${problem.path === '' ? 'the file' : problem.path} ${problem.message}`)
  return (parsed as TenantsFile).tenants
}
