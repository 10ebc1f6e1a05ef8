import { readFileSync } from 'node:fs'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { errorResponses } from '../schemas/errors.ts'
import { defaultTokenTtlSeconds, TokenResponse } from '../schemas/tokens.ts'

export interface DemoRoutesOptions {
  /** the tenant whose tokens POST /demo/token mints (simulator mode); null: no such endpoint, the page asks for a token */
  demoTenantId: string | null
  /** per client IP: the token endpoint needs no key, so it is limited like unauthenticated requests */
  tokenRateLimit: { max: number, timeWindowMs: number }
}

// The page's files sit in src/assets/demo/ (dist/assets/demo/ once built), beside routes/.
const assetsDirectory = new URL('../assets/demo/', import.meta.url)
const readAsset = (name: string): string => readFileSync(new URL(name, assetsDirectory), 'utf8')

// Nothing but the page's own files and the gateway itself; result videos come from the
// provider's storage, whatever its host, so media may come from anywhere.
const pageHeaders = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; media-src * blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-cache'
}

/** A demo's token: enough for a few videos, for the page's own origin, for ten minutes. */
const demoTokenMaxCreates = 20

/**
 * The demo page (GET /demo): type a prompt, press Generate, watch the progress
 * live and the video play. In simulator mode, POST /demo/token gives the page
 * a browser token for the demo tenant; a real deployment's page gets its token
 * from the tenant's own backend instead (README, "Browser front-ends").
 */
const demoRoutes: FastifyPluginAsyncTypebox<DemoRoutesOptions> = async (fastify, options) => {
  const files = {
    html: readAsset('index.html'),
    script: readAsset('demo.js'),
    style: readAsset('demo.css')
  }
  const hidden = { hide: true }

  fastify.get('/demo', { schema: hidden }, async (_request, reply) =>
    await reply.headers(pageHeaders).type('text/html; charset=utf-8').send(files.html))
  fastify.get('/demo/demo.js', { schema: hidden }, async (_request, reply) =>
    await reply.headers(pageHeaders).type('text/javascript; charset=utf-8').send(files.script))
  fastify.get('/demo/demo.css', { schema: hidden }, async (_request, reply) =>
    await reply.headers(pageHeaders).type('text/css; charset=utf-8').send(files.style))

  const { demoTenantId } = options
  if (demoTenantId === null) return
  fastify.post('/demo/token', {
    config: { rateLimit: { max: options.tokenRateLimit.max, timeWindow: options.tokenRateLimit.timeWindowMs } },
    schema: {
      tags: ['Demo'],
      summary: 'A browser token for the demo tenant (simulator mode only)',
      description: `Only while the gateway runs on its built-in simulator with its demo tenant: a token for the demo page's own origin, ${defaultTokenTtlSeconds / 60} minutes, at most ${demoTokenMaxCreates} creates. A real deployment mints tokens with POST /v1/tokens from the tenant's backend.`,
      operationId: 'createDemoToken',
      response: { 200: TokenResponse, ...errorResponses([429, 500]) }
    }
  }, async function createDemoToken (request) {
    const { token, grant } = await fastify.browserTokens.mint({
      tenantId: demoTenantId,
      ttlSeconds: defaultTokenTtlSeconds,
      claims: {
        operations: ['create', 'read'],
        maxCreates: demoTokenMaxCreates,
        models: null,
        qualities: null,
        maxDuration: null,
        endUser: 'demo-page',
        origin: `${request.protocol}://${request.host}`
      }
    })
    return { token, token_type: 'Bearer' as const, expires_at: grant.expiresAt, expires_in: defaultTokenTtlSeconds }
  })
}

export default demoRoutes
