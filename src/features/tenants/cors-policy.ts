import type { FastifyRequest } from 'fastify'
import type { TenantRegistry } from './registry.ts'
import type { TenantRegistryHolder } from './reload.ts'

/**
 * Which browser origins may read an answer: the tenants' own `allowedOrigins`.
 * The CORS registration (plugins/external/cors.ts) asks; the policy is the tenants'.
 */
export interface CorsPolicy {
  /**
   * A request after tenant auth: its own tenant's origins only. A preflight carries
   * no key, so it is answered for any origin some tenant allows (it grants nothing by
   * itself: the real request still needs a key and that tenant's origin).
   */
  allowsRequest (request: FastifyRequest, origin: string): boolean
  /**
   * An error answer, which may come before auth (a missing or expired token is refused
   * at onRequest): unauthenticated, any origin some tenant allows may read it, since an
   * error grants nothing; authenticated, the tenant's own.
   */
  allowsError (request: FastifyRequest, origin: string): boolean
}

function allOrigins (registry: TenantRegistry): ReadonlySet<string> {
  return new Set(registry.tenants.flatMap((tenant) => [...(tenant.allowedOrigins ?? [])]))
}

export function createCorsPolicy (tenantRegistry: TenantRegistryHolder): CorsPolicy {
  // Every origin some tenant allows, worked out again only when a reload swapped the registry.
  let originsOf = tenantRegistry.current
  let origins = allOrigins(originsOf)
  function anyTenantAllows (origin: string): boolean {
    if (originsOf !== tenantRegistry.current) {
      originsOf = tenantRegistry.current
      origins = allOrigins(originsOf)
    }
    return origins.has(origin)
  }
  const ownTenantAllows = (request: FastifyRequest, origin: string): boolean => request.tenant?.allowedOrigins?.has(origin) === true
  return {
    allowsRequest: (request, origin) => request.method === 'OPTIONS' ? anyTenantAllows(origin) : ownTenantAllows(request, origin),
    allowsError: (request, origin) => request.tenant === null ? anyTenantAllows(origin) : ownTenantAllows(request, origin)
  }
}
