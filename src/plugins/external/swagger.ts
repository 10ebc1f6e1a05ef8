import fp from 'fastify-plugin'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { FastifyInstance } from 'fastify'
import { errorTableMarkdown } from '../../schemas/errors.ts'

const errorSchemaName = 'ErrorResponse'

function errorSchemaDescription (): string {
  return [
    'Every non-2xx answer has this body, `{"error":{"code","message","type","request_id","param"?}}`, and an `x-request-id` header (the same as `request_id`). Each operation\'s error responses name the codes it can answer; all of them:',
    '',
    errorTableMarkdown()
  ].join('\n')
}

/**
 * /openapi.json and /docs, generated from the same TypeBox schemas the routes
 * validate with.
 */
async function swaggerPlugin (fastify: FastifyInstance, options: { version: string }): Promise<void> {
  await fastify.register(swagger, {
    // Shared schemas keep their $id as their name (ErrorResponse, not def-0).
    refResolver: {
      buildLocalReference: (json, _baseUri, _fragment, index) => typeof json.$id === 'string' ? json.$id : `def-${index}`
    },
    // The shared ErrorResponse schema is also what the routes serialise with: the table
    // (document-only prose) is added to the document's copy, not to that schema.
    transformObject: (documents) => {
      if (!('openapiObject' in documents)) return documents.swaggerObject
      const schema = documents.openapiObject.components?.schemas?.[errorSchemaName]
      if (schema !== undefined && !('$ref' in schema)) schema.description = errorSchemaDescription()
      return documents.openapiObject
    },
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'video-gateway',
        version: options.version,
        // Short, so that Swagger UI shows the operations first; the error table is in the
        // ErrorResponse schema's description (transformObject below), in the Schemas section.
        description: [
          'A gateway in front of Evolink\'s video-generation API (Veo 3.1 Fast). An Evolink client works against it by changing only its base URL and key: authenticate with your tenant key; the Evolink key never leaves the gateway.',
          '',
          `Every non-2xx answer has one format, the ${errorSchemaName} schema (its description, under Schemas below the operations, is the table of every error code).`
        ].join('\n')
      },
      components: {
        securitySchemes: {
          tenantKey: { type: 'http', scheme: 'bearer', description: 'Your tenant key, `Authorization: Bearer <tenant key>`; from a browser, a short-lived token minted with POST /v1/tokens (routes that take one say so).' },
          adminToken: { type: 'http', scheme: 'bearer', description: 'An admin token, `Authorization: Bearer <admin token>`, whose `sha256:` hash ADMIN_TOKENS lists (`npm run tenants -- admin-token` makes one). Tenant keys and browser tokens are refused.' }
        }
      },
      tags: [
        { name: 'Video Generation', description: 'Create video generation tasks' },
        { name: 'Tasks', description: 'Task status and results' },
        { name: 'Browser tokens', description: 'Short-lived tokens for browser front-ends' },
        { name: 'Demo', description: 'The demo page\'s token (simulator mode only)' },
        { name: 'Usage', description: 'What the calling tenant has used, per day' },
        { name: 'Webhooks', description: 'Deliveries to callback_url: attempts, retries, redelivery' },
        { name: 'Operations', description: 'Health and readiness' },
        { name: 'admin', description: 'Database mode (DATABASE_URL): tenants, their keys and the audit log, changed without a restart. Admin tokens only; on ADMIN_PORT when it is set.' }
      ]
    }
  })
  // staticCSP replaces the API's strict CSP with one that lets the docs page load its own assets.
  await fastify.register(swaggerUi, {
    routePrefix: '/docs',
    staticCSP: true,
    uiHooks: {
      // swagger-ui redirects /docs/static/index.html to its own URL when the
      // path is percent-encoded or has a query (a redirect loop): send it home.
      onRequest: (request, reply, done) => {
        if (request.routeOptions.url === '/docs/static/index.html') {
          reply.redirect('/docs/')
          return
        }
        done()
      }
    }
  })
  fastify.get('/openapi.json', { schema: { hide: true } }, async () => fastify.swagger())
}

export default fp(swaggerPlugin, { name: 'swagger', fastify: '5.x' })
