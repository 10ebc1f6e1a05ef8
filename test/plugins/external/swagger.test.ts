import t from 'tap'
import { buildTestApp, makeTenant } from '../../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'
import { errorTable } from '../../../src/errors/table.ts'

t.test('/openapi.json describes the gateway from the route schemas', async (t) => {
  const upstream = await startTestSimulator(t)
  const app = await buildTestApp(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [makeTenant('acme')] })
  const response = await app.inject({ method: 'GET', url: '/openapi.json' })
  t.equal(response.statusCode, 200)
  const spec = response.json()
  t.equal(spec.openapi, '3.1.0')
  t.same(spec.components.securitySchemes.tenantKey, { type: 'http', scheme: 'bearer', description: 'Your tenant key, `Authorization: Bearer <tenant key>`; from a browser, a short-lived token minted with POST /v1/tokens (routes that take one say so).' })
  t.ok(spec.components.schemas.ErrorResponse, 'the error format is a shared schema')
  // The error table is the ErrorResponse schema's description (Swagger UI's Schemas section,
  // below the operations), not the document's description (above them).
  t.notMatch(spec.info.description, /\| status \| code \|/, 'no error table above the operations')
  t.match(spec.info.description, /the ErrorResponse schema \(its description, under Schemas below the operations, is the table of every error code\)/)
  t.ok(spec.info.description.split('\n').length <= 3, 'the document description stays short')
  const errorDescription: string = spec.components.schemas.ErrorResponse.description
  t.match(errorDescription, /^Every non-2xx answer has this body/)
  for (const [code, row] of Object.entries(errorTable)) t.match(errorDescription, `| ${row.statusCode} | \`${code}\` | ${row.type} |`, `the table has ${code}`)

  const create = spec.paths['/v1/videos/generations'].post
  t.same(create.tags, ['Video Generation'])
  t.same(create.security, [{ tenantKey: [] }])
  t.same(Object.keys(create.responses).sort(), ['200', '400', '401', '403', '404', '409', '413', '415', '422', '429', '500', '502', '503', '504'])
  const body = create.requestBody.content['application/json'].schema
  t.equal(body.additionalProperties, false)
  t.same(body.properties.model.enum, ['veo-3.1-fast-generate-preview', 'veo-3.1-generate-preview'])
  t.same(body.properties.generation_type.enum, ['TEXT', 'FIRST&LAST', 'REFERENCE'])
  t.same(body.properties.quality.enum, ['720p', '1080p', '4k'])
  t.same(body.properties.aspect_ratio.enum, ['auto', '16:9', '9:16'])
  t.equal(body.properties.image_urls.maxItems, 3)

  const read = spec.paths['/v1/tasks/{task_id}'].get
  t.same(read.tags, ['Tasks'])
  t.same(Object.keys(read.responses).sort(), ['200', '304', '400', '401', '404', '429', '500', '502', '503', '504'])
  t.match(read.responses['404'].description, /`not_found`/)
  t.same(read.parameters.map((parameter: { in: string, name: string }) => `${parameter.in}:${parameter.name}`).sort(), ['header:if-none-match', 'path:task_id', 'query:wait'])
  const events = spec.paths['/v1/tasks/{task_id}/events'].get
  t.same(events.tags, ['Tasks'])
  t.ok(events.responses['200'].content['text/event-stream'], 'the stream is documented as text/event-stream')
  t.same(Object.keys(events.responses).sort(), ['200', '204', '400', '401', '404', '429', '500', '502', '503', '504'])
  const deliveries = spec.paths['/v1/webhooks/deliveries'].get
  t.same(deliveries.tags, ['Webhooks'])
  t.same(deliveries.security, [{ tenantKey: [] }])
  t.same(deliveries.parameters.map((parameter: { in: string, name: string }) => `${parameter.in}:${parameter.name}`), ['query:task_id'])
  t.same(Object.keys(deliveries.responses).sort(), ['200', '400', '401', '404', '429', '500', '503'])
  const redeliver = spec.paths['/v1/webhooks/deliveries/{delivery_id}/redeliver'].post
  t.same(redeliver.tags, ['Webhooks'])
  t.same(Object.keys(redeliver.responses).sort(), ['202', '400', '401', '404', '429', '500', '503'])
  t.notOk(spec.paths['/callbacks/evolink/{token}'], 'the upstream\'s callback route is not for tenants')
  t.ok(spec.paths['/healthz'] && spec.paths['/readyz'])
  t.notOk(spec.paths['/openapi.json'], 'the document itself is hidden')
  t.notMatch(response.body, TEST_UPSTREAM_KEY)

  const docs = await app.inject({ method: 'GET', url: '/docs/' })
  t.equal(docs.statusCode, 200)
  t.match(docs.headers['content-type'], /text\/html/)
})
