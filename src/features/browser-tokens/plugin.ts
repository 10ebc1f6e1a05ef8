import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { gatewayError, storeUnavailable } from '../../errors/table.ts'
import { effectiveRequest } from '../../models/index.ts'
import type { CreateGenerationBody } from '../../schemas/generation.ts'
import { createBrowserTokenSigner, type BrowserTokenGrant, type BrowserTokenSigner } from './token.ts'
import { memoryTokenCreateCounter, redisTokenCreateCounter } from './create-counter.ts'
import type { ResolvedRateLimit, Tenant } from '../tenants/registry.ts'
import { limitExceeded } from '../../plugins/external/rate-limit.ts'

export interface BrowserTokensOptions {
  /** GATEWAY_SECRET's list: the first signs, all verify */
  secrets: readonly string[]
  /** without Redis: how many tokens' create counts are kept */
  memoryMaxTokens?: number
  /** the token clock (ms); tests mint tokens that are already expired */
  now?: () => number
}

/** What a create asks for, as far as a token's narrowing is concerned. */
export type CreateRequestShape = Pick<CreateGenerationBody, 'model' | 'quality' | 'duration' | 'generation_type'>

export interface BrowserTokens extends BrowserTokenSigner {
  /**
   * Checks a token-authenticated create against what the token allows and
   * counts it against the token's create cap and the end user's limit.
   * Resolves with a function that takes the create back if the upstream
   * refuses it; tenant-key requests pass through (nothing to take back).
   */
  admitCreate (request: FastifyRequest, body: CreateRequestShape): Promise<() => Promise<void>>
}

declare module 'fastify' {
  interface FastifyInstance {
    browserTokens: BrowserTokens
  }
  interface FastifyRequest {
    /** the grant of the browser token the request came with; null with a tenant key */
    browserToken: BrowserTokenGrant | null
  }
}

const nothingToTakeBack = async (): Promise<void> => {}

function refuse (message: string, param: string): never {
  throw gatewayError('forbidden', { args: [message], param })
}

async function browserTokensPlugin (fastify: FastifyInstance, options: BrowserTokensOptions): Promise<void> {
  const signer = createBrowserTokenSigner({ secrets: options.secrets, now: options.now })
  const counter = fastify.redis === null
    ? memoryTokenCreateCounter({ maxTokens: options.memoryMaxTokens ?? 10_000, now: options.now })
    : redisTokenCreateCounter({ redis: fastify.redis, keyPrefix: fastify.redisKeys.tokenCreates })
  // One limiter per tenant that sets an end-user limit: its window is the tenant's own. Made when first
  // needed and kept while the plan stays the same, so that a tenants reload that changes nothing else keeps the counts.
  const endUserLimiters = new Map<string, { plan: ResolvedRateLimit, limit: ReturnType<FastifyInstance['createRateLimit']> }>()
  function endUserLimiterOf (tenant: Tenant): { plan: ResolvedRateLimit, limit: ReturnType<FastifyInstance['createRateLimit']> } | undefined {
    const plan = tenant.endUserRateLimit
    if (plan === null) return undefined
    const known = endUserLimiters.get(tenant.id)
    if (known !== undefined && known.plan.max === plan.max && known.plan.timeWindowMs === plan.timeWindowMs) return known
    const limiter = {
      plan,
      limit: fastify.createRateLimit({
        max: plan.max,
        timeWindow: plan.timeWindowMs,
        keyGenerator: (request: FastifyRequest) => `end-user:${tenant.id}:${request.browserToken?.endUser ?? ''}`
      })
    }
    endUserLimiters.set(tenant.id, limiter)
    return limiter
  }

  fastify.decorateRequest('browserToken', null)

  async function limitEndUser (request: FastifyRequest, grant: BrowserTokenGrant): Promise<void> {
    // The tenant the request authenticated as (a reload during the request does not change it).
    const limiter = grant.endUser === null || request.tenant === null ? undefined : endUserLimiterOf(request.tenant)
    if (limiter === undefined) return
    const limit = await limiter.limit(request)
    if (limit.isAllowed === false && limit.isExceeded) {
      throw limitExceeded({ policy: 'end-user', ...limiter.plan, retryAfterSeconds: limit.ttlInSeconds })
    }
  }

  async function countCreate (grant: BrowserTokenGrant): Promise<() => Promise<void>> {
    if (grant.maxCreates === null) return nothingToTakeBack
    let count: number
    try {
      count = await counter.add(grant.tokenId, grant.expiresAt * 1000)
    } catch (cause) {
      // Fail closed: without the store the cap cannot be kept.
      fastify.redisOutage?.failed(cause)
      throw storeUnavailable(cause)
    }
    const takeBack = async (): Promise<void> => { await counter.remove(grant.tokenId).catch(() => {}) }
    if (count > grant.maxCreates) {
      await takeBack()
      refuse(`This token's create limit (${grant.maxCreates}) is used up; get a new token.`, 'token')
    }
    return takeBack
  }

  const tokens: BrowserTokens = {
    mint: signer.mint,
    verify: signer.verify,
    async admitCreate (request, body) {
      const grant = request.browserToken
      if (grant === null) return nothingToTakeBack
      if (grant.models !== null && !grant.models.includes(body.model)) refuse(`This token may not use model "${body.model}".`, 'model')
      const { quality, duration } = effectiveRequest(body)
      if (grant.qualities !== null && !grant.qualities.includes(quality)) refuse(`This token may not use quality "${quality}" (allowed: ${grant.qualities.join(', ')}).`, 'quality')
      if (grant.maxDuration !== null && duration > grant.maxDuration) refuse(`This token allows videos of at most ${grant.maxDuration} seconds.`, 'duration')
      await limitEndUser(request, grant)
      return await countCreate(grant)
    }
  }
  fastify.decorate('browserTokens', tokens)
}

export default fp(browserTokensPlugin, { name: 'browser-tokens', fastify: '5.x', dependencies: ['redis-store', 'rate-limit'] })
