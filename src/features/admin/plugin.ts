import { hash, timingSafeEqual } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { gatewayError, type GatewayError } from '../../errors/table.ts'
import { limitExceeded } from '../../plugins/external/rate-limit.ts'
import { looksLikeToken, TokenRejection } from '../browser-tokens/token.ts'
import { tenantKeyHash } from '../tenants/registry.ts'
import adminRoutes from './routes.ts'

export interface AdminOptions {
  /** ADMIN_TOKENS: `sha256:<hex>` hashes, comma-separated; empty: every admin request is refused */
  tokenHashes: string
  /** ADMIN_PORT: non-zero, the admin routes answer only on the admin listener (listener.ts) */
  adminPort: number
  /** per client IP, for admin requests without a valid token (as for tenant keys) */
  unauthenticatedRateLimit: { max: number, timeWindowMs: number }
  /** the clock of key expiries and statuses (ms) */
  now?: () => number
}

declare module 'fastify' {
  interface FastifyRequest {
    /** who is making an admin change: the start of the admin token's hash (`sha256:1a2b3c4d`) */
    adminActor: string | null
  }
  interface FastifyContextConfig {
    /** an admin route (the only ones the admin listener serves) */
    admin?: boolean
  }
}

/** Set by the admin listener on each request it hands to the app. */
export const viaAdminListener = Symbol('viaAdminListener')

export function markAdminRequest (request: IncomingMessage): void {
  (request as IncomingMessage & { [viaAdminListener]?: true })[viaAdminListener] = true
}

function cameViaAdminListener (request: FastifyRequest): boolean {
  return (request.raw as IncomingMessage & { [viaAdminListener]?: true })[viaAdminListener] === true
}

const bearerPattern = /^Bearer ([\x21-\x7e]{1,4096})$/i
const unauthorizedHeaders = { 'www-authenticate': 'Bearer realm="video-gateway-admin"' }

/** The digests of ADMIN_TOKENS (a hash is 32 bytes: every comparison below is of equal lengths). */
function parseTokenHashes (value: string): Buffer[] {
  return value.split(',').map((part) => part.trim()).filter(Boolean).map((part) => Buffer.from(part.slice('sha256:'.length), 'hex'))
}

async function adminPlugin (fastify: FastifyInstance, options: AdminOptions): Promise<void> {
  const digests = parseTokenHashes(options.tokenHashes)
  const { max, timeWindowMs } = options.unauthenticatedRateLimit
  const limitUnauthenticated = fastify.createRateLimit({ max, timeWindow: timeWindowMs })
  const separatePort = options.adminPort !== 0

  fastify.decorateRequest('adminActor', null)

  /** The matching admin token's hash prefix, or null. Every configured hash is compared, in constant time. */
  function adminActorOf (token: string): string | null {
    const digest = hash('sha256', token, 'buffer')
    let matched: Buffer | null = null
    for (const candidate of digests) {
      if (timingSafeEqual(candidate, digest) && matched === null) matched = candidate
    }
    return matched === null ? null : `sha256:${matched.toString('hex').slice(0, 8)}`
  }

  async function refuse (request: FastifyRequest, refusal: GatewayError): Promise<never> {
    const limit = await limitUnauthenticated(request)
    if (limit.isAllowed === false && limit.isExceeded) throw limitExceeded({ policy: 'ip', max, timeWindowMs, retryAfterSeconds: limit.ttlInSeconds })
    throw refusal
  }

  /** A credential the gateway knows, but for tenants: a live tenant key, or a browser token that verifies. */
  async function isTenantCredential (credential: string): Promise<boolean> {
    if (fastify.tenantRegistry.current.byKeyHash.has(tenantKeyHash(credential))) return true
    if (!looksLikeToken(credential)) return false
    try {
      await fastify.browserTokens.verify(credential)
      return true
    } catch (error) {
      // An expired token was still one of ours.
      if (error instanceof TokenRejection) return error.reason === 'expired'
      throw error
    }
  }

  async function authenticateAdmin (request: FastifyRequest): Promise<void> {
    const match = bearerPattern.exec(request.headers.authorization ?? '')
    if (match === null) return await refuse(request, gatewayError('admin_unauthorized', { headers: unauthorizedHeaders }))
    const credential = match[1] as string
    const actor = adminActorOf(credential)
    if (actor !== null) {
      request.adminActor = actor
      return
    }
    if (await isTenantCredential(credential)) throw gatewayError('admin_forbidden', { param: 'authorization' })
    return await refuse(request, gatewayError('admin_unauthorized', { headers: unauthorizedHeaders }))
  }

  // With ADMIN_PORT the two listeners serve disjoint routes: the admin ones there, the others here.
  // Both answer what does not belong with the unknown-route 404, so neither reveals the other.
  if (separatePort) {
    // Synchronous: it runs on every request of both ports and awaits nothing.
    fastify.addHook('onRequest', (request, _reply, done) => {
      const isAdminRoute = request.routeOptions.config.admin === true
      if (isAdminRoute === cameViaAdminListener(request)) {
        done()
        return
      }
      const path = request.url.split('?')[0]?.slice(0, 200) ?? ''
      done(gatewayError('not_found', { args: [`No route ${request.method} ${path}.`] }))
    })
  }

  await fastify.register(adminRoutes, { prefix: '/admin/v1', authenticateAdmin, now: options.now ?? Date.now })
}

export default fp(adminPlugin, { name: 'admin', fastify: '5.x', dependencies: ['rate-limit', 'browser-tokens', 'tenant-registry', 'database'] })
