import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { gatewayError } from '../../errors/table.ts'
import { errorResponses } from '../../schemas/errors.ts'
import { CreateTokenBody, defaultTokenTtlSeconds, TokenResponse } from '../../schemas/tokens.ts'
import { tenantOf } from '../../features/tenants/auth.ts'
import { tenantRateLimit } from '../../features/tenants/rate-limit.ts'

const tokensRoute: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.post('/tokens', {
    // Minted per page view by a tenant's backend: the (higher) read plan, counted apart from creates.
    config: tenantRateLimit('read'),
    schema: {
      tags: ['Browser tokens'],
      summary: 'Mint a short-lived token for a browser',
      description: 'Tenant key only (a token cannot mint tokens). The token acts for the tenant, within its limits, narrowed by what the body says: operations, a create cap, models, qualities, longest duration, an end user id (logged, and limited by the tenant\'s `endUserRateLimit`) and the origin it is bound to. ' +
        'Signed by the gateway (HS256 JWT, key id in the header; rotating GATEWAY_SECRET keeps issued tokens valid while the old secret stays listed).',
      operationId: 'createBrowserToken',
      security: [{ tenantKey: [] }],
      body: CreateTokenBody,
      response: {
        200: TokenResponse,
        ...errorResponses([400, 401, 403, 413, 415, 429, 500])
      }
    }
  }, async function createBrowserToken (request) {
    const tenant = tenantOf(request)
    const { body } = request
    if (body.origin !== undefined && tenant.allowedOrigins?.has(body.origin) !== true) {
      throw gatewayError('invalid_request', { args: [`origin "${body.origin}" is not one of this tenant's allowedOrigins.`], param: 'origin' })
    }
    const ttlSeconds = body.ttl_seconds ?? defaultTokenTtlSeconds
    const { token, grant } = await fastify.browserTokens.mint({
      tenantId: tenant.id,
      ttlSeconds,
      claims: {
        operations: body.operations ?? ['create', 'read'],
        maxCreates: body.max_creates ?? null,
        models: body.models ?? null,
        qualities: body.qualities ?? null,
        maxDuration: body.max_duration ?? null,
        endUser: body.end_user ?? null,
        origin: body.origin ?? null
      }
    })
    return { token, token_type: 'Bearer' as const, expires_at: grant.expiresAt, expires_in: ttlSeconds }
  })
}

export default tokensRoute
