import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { gatewayError, type GatewayError } from '../../errors/table.ts'
import { looksLikeToken, TokenRejection, type BrowserTokenGrant, type TokenOperation } from '../browser-tokens/token.ts'
import { limitExceeded } from '../../plugins/external/rate-limit.ts'
import { tenantKeyHash, type Tenant } from './registry.ts'

export interface TenantAuthOptions {
  /** per client IP, for requests without a valid key */
  unauthenticatedRateLimit: { max: number, timeWindowMs: number }
}

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Sets `request.tenant` from `Authorization: Bearer <key or token>`, or refuses (401, 403, 429).
     * Synchronous for a tenant key, the common case: it returns undefined once the tenant is set,
     * or throws a refusal it can decide at once; a promise only for what needs one (a browser
     * token, a refusal counted against the client IP). For an onRequest hook (routes/v1/index.ts).
     */
    authenticateTenant (request: FastifyRequest): Promise<void> | undefined
  }
  interface FastifyRequest {
    tenant: Tenant | null
  }
  interface FastifyContextConfig {
    /** what a browser token needs to be allowed here; a route without it takes tenant keys only */
    tokenOperation?: TokenOperation
    /** the route also takes a browser token as `?token=` (EventSource cannot send headers) */
    tokenInQuery?: boolean
  }
}

// Long enough for a browser token (a JWT carrying its narrowing), short enough to bound the work.
const bearerPattern = /^Bearer ([\x21-\x7e]{1,4096})$/i

export function tenantOf (request: FastifyRequest): Tenant {
  if (request.tenant === null) throw new Error('route reached without authenticateTenant')
  return request.tenant
}

/** The key or token presented: the Authorization header, or `?token=` where the route allows a token there. */
function presentedCredential (request: FastifyRequest): string | null {
  const match = bearerPattern.exec(request.headers.authorization ?? '')
  if (match !== null) return match[1] as string
  if (request.routeOptions.config.tokenInQuery !== true) return null
  const queryToken = (request.query as { token?: unknown }).token
  // Only a token, never a tenant key, in a URL: URLs end up in browser history and proxy logs.
  return typeof queryToken === 'string' && looksLikeToken(queryToken) ? queryToken : null
}

/** A page of the gateway itself (the demo, the API docs) is not a "browser elsewhere". */
function isForeignOrigin (request: FastifyRequest, origin: string): boolean {
  return origin !== `${request.protocol}://${request.host}`
}

async function tenantAuthPlugin (fastify: FastifyInstance, options: TenantAuthOptions): Promise<void> {
  // Read per request, never kept: a reload (tenants/reload.ts) applies to the next request.
  const { tenantRegistry } = fastify
  const { max, timeWindowMs } = options.unauthenticatedRateLimit
  const limitUnauthenticated = fastify.createRateLimit({ max, timeWindow: timeWindowMs })
  const unauthorizedHeaders = { 'www-authenticate': 'Bearer realm="video-gateway"' }
  const invalidTokenHeaders = { 'www-authenticate': 'Bearer realm="video-gateway", error="invalid_token"' }

  fastify.decorateRequest('tenant', null)

  /** Counts a failed attempt against the client IP (keys and tokens cannot be guessed at speed), then refuses. */
  async function refuseUnauthenticated (request: FastifyRequest, refusal: GatewayError): Promise<never> {
    const limit = await limitUnauthenticated(request)
    if (limit.isAllowed === false && limit.isExceeded) {
      throw limitExceeded({ policy: 'ip', max, timeWindowMs, retryAfterSeconds: limit.ttlInSeconds })
    }
    throw refusal
  }

  async function authenticateToken (request: FastifyRequest, token: string): Promise<void> {
    let grant: BrowserTokenGrant
    try {
      grant = await fastify.browserTokens.verify(token)
    } catch (error) {
      if (!(error instanceof TokenRejection)) throw error
      const refusal = gatewayError(error.reason === 'expired' ? 'token_expired' : 'invalid_token', { args: [error.message], headers: invalidTokenHeaders })
      // An expired token was ours: a page that outlived it is not guessing.
      if (error.reason === 'expired') throw refusal
      return await refuseUnauthenticated(request, refusal)
    }
    const tenant = tenantRegistry.current.byId.get(grant.tenantId)
    if (tenant === undefined) {
      throw gatewayError('invalid_token', { args: ['The token\'s tenant no longer exists.'], headers: invalidTokenHeaders })
    }
    const operation = request.routeOptions.config.tokenOperation
    if (operation === undefined || !grant.operations.includes(operation)) {
      throw gatewayError('forbidden', {
        args: [operation === undefined ? 'Browser tokens cannot be used here; send the tenant key from your backend.' : `This token does not allow "${operation}".`],
        param: 'token'
      })
    }
    // Browsers always send Origin on cross-origin requests, so a page elsewhere cannot use a bound token.
    const origin = request.headers.origin
    if (grant.origin !== null && origin !== undefined && origin !== grant.origin) {
      throw gatewayError('forbidden', { args: [`This token is bound to another origin than ${origin}.`], param: 'origin' })
    }
    if (origin !== undefined && isForeignOrigin(request, origin) && tenant.allowedOrigins?.has(origin) !== true) {
      throw gatewayError('forbidden', { args: [`Origin ${origin} is not allowed for this tenant.`], param: 'origin' })
    }
    request.tenant = tenant
    request.browserToken = grant
  }

  fastify.decorate('authenticateTenant', function authenticateTenant (request: FastifyRequest): Promise<void> | undefined {
    const credential = presentedCredential(request)
    if (credential === null) return refuseUnauthenticated(request, gatewayError('unauthorized', { headers: unauthorizedHeaders }))
    // The lookup is by hash, so no secret is ever compared byte by byte here.
    const tenant = tenantRegistry.current.byKeyHash.get(tenantKeyHash(credential))
    if (tenant !== undefined) {
      // Known even when refused below: the log names it, and CORS answers by its origins.
      request.tenant = tenant
      const origin = request.headers.origin
      if (!tenant.browserKeys && origin !== undefined && isForeignOrigin(request, origin)) {
        throw gatewayError('forbidden', {
          args: ['Tenant keys are not accepted from browser pages: mint a short-lived token with POST /v1/tokens from your backend.'],
          param: 'authorization'
        })
      }
      return undefined
    }
    if (looksLikeToken(credential)) return authenticateToken(request, credential)
    return refuseUnauthenticated(request, gatewayError('unauthorized', { headers: unauthorizedHeaders }))
  })
}

export default fp(tenantAuthPlugin, { name: 'tenant-auth', fastify: '5.x', dependencies: ['rate-limit', 'browser-tokens', 'tenant-registry'] })
