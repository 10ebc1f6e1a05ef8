import t, { type Test } from 'tap'
import { Ajv2020 } from 'ajv/dist/2020.js'
import addFormats from 'ajv-formats'
import { makeTenant, startTestGateway, validBody } from '../../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'
import { adminAuthorization, buildDatabaseTestApp, migratedDatabase } from '../../helpers/database.ts'

interface MediaType { schema?: object, example?: unknown, examples?: Record<string, { value: unknown }> }
interface Parameter { in: string, name: string, required?: boolean, example?: unknown, examples?: Record<string, { value: unknown }> }
interface Operation {
  operationId?: string
  parameters?: Parameter[]
  requestBody?: { content?: Record<string, MediaType> }
  responses: Record<string, { content?: Record<string, MediaType> }>
}
interface Document { paths: Record<string, Record<string, Operation>>, components: { schemas: Record<string, object> } }

/** An example object's values: `example`, or each entry of `examples`. */
function examplesOf (holder: { example?: unknown, examples?: Record<string, { value: unknown }> }): unknown[] {
  return [...('example' in holder ? [holder.example] : []), ...Object.values(holder.examples ?? {}).map((entry) => entry.value)]
}

/** One request built from an operation's examples: a body example (or none) with every parameter that has an example. */
interface Sample { label: string, contentType?: string, body?: unknown }

function bodyOf (contentType: string, example: unknown): { body: string | FormData, headers: Record<string, string> } {
  if (contentType === 'application/json') return { body: JSON.stringify(example), headers: { 'content-type': 'application/json' } }
  if (contentType === 'multipart/form-data') {
    // As Swagger UI sends a form: one part per top-level field.
    const form = new FormData()
    for (const [name, value] of Object.entries(example as Record<string, unknown>)) form.append(name, typeof value === 'string' ? value : JSON.stringify(value))
    return { body: form, headers: {} }
  }
  throw new Error(`no way to send a ${contentType} example`)
}

/** Sends every example of the operations under the paths `include` takes; answers how many, and the bodies without one. */
async function sendExamples (t: Test, options: { url: string, document: Document, authorization: string, pathValues: Record<string, string>, include: (path: string) => boolean }): Promise<{ sent: number, withoutExample: string[] }> {
  const { url, document, authorization, pathValues, include } = options
  const ajv = new Ajv2020({ strict: false, allErrors: true })
  addFormats.default(ajv)
  ajv.addSchema({ $id: 'document', components: document.components })
  let sent = 0
  const withoutExample: string[] = []
  for (const [path, operations] of Object.entries(document.paths)) {
    if (!include(path)) continue
    for (const [method, operation] of Object.entries(operations)) {
      const name = `${method.toUpperCase()} ${path}`
      const parameters = operation.parameters ?? []
      for (const parameter of parameters.filter((p) => p.in === 'path')) {
        t.same(examplesOf(parameter), [], `${name}: path parameter ${parameter.name} has no example`)
      }
      const samples: Sample[] = []
      for (const [contentType, media] of Object.entries(operation.requestBody?.content ?? {})) {
        const examples = examplesOf(media)
        if (examples.length === 0) withoutExample.push(`${name} ${contentType}`)
        examples.forEach((body, index) => samples.push({ label: `${contentType} example ${index + 1}`, contentType, body }))
      }
      const withExamples = parameters.filter((p) => p.in !== 'path' && examplesOf(p).length > 0)
      if (samples.length === 0 && withExamples.length > 0) samples.push({ label: 'parameter examples' })
      if (samples.length === 0) continue

      const successes = Object.keys(operation.responses).filter((status) => status.startsWith('2'))
      t.ok(successes.length > 0, `${name} documents a success`)
      for (const sample of samples) {
        let target = path.replaceAll(/\{(\w+)\}/g, (_match, key: string) => {
          const value = pathValues[key]
          if (value === undefined) throw new Error(`${name}: no value for path parameter ${key}`)
          return encodeURIComponent(value)
        })
        const query = new URLSearchParams()
        const headers: Record<string, string> = { authorization }
        for (const parameter of withExamples) {
          const value = String(examplesOf(parameter)[0])
          if (parameter.in === 'query') query.set(parameter.name, value)
          else if (parameter.in === 'header') headers[parameter.name] = value
        }
        if (query.size > 0) target += `?${query}`
        const payload = sample.contentType === undefined ? undefined : bodyOf(sample.contentType, sample.body)
        const answer = await fetch(`${url}${target}`, { method: method.toUpperCase(), headers: { ...headers, ...payload?.headers }, body: payload?.body })
        const text = await answer.text()
        const label = `${name} (${sample.label}${query.size > 0 ? `, ?${query}` : ''})`
        // The one success the operation documents, or one of its successes when it has several.
        if (successes.length === 1) t.equal(String(answer.status), successes[0], `${label}: ${answer.status} ${text.slice(0, 300)}`)
        else t.ok(successes.includes(String(answer.status)), `${label}: ${answer.status} ${text.slice(0, 300)}`)
        const schema = operation.responses[String(answer.status)]?.content?.['application/json']?.schema
        if (schema !== undefined) {
          const validate = ajv.compile(JSON.parse(JSON.stringify(schema).replaceAll('"#/components/', '"document#/components/')))
          t.ok(validate(JSON.parse(text)), `${label}: the answer matches the documented ${answer.status} schema`, { errors: validate.errors })
        }
        sent++
      }
    }
  }
  return { sent, withoutExample }
}

// Swagger UI's "Try it out" sends the document's examples as they are: each one, sent by a tenant
// shaped like simulator mode's demo tenant (no allowedOrigins, no model limits), must get the
// operation's documented success, with a body that matches the documented success schema.
t.test('every example in /openapi.json gets its documented success from the gateway', async (t) => {
  const upstream = await startTestSimulator(t)
  const tenant = makeTenant('demo', { rateLimit: { max: 60, timeWindow: 60_000 } })
  const { url } = await startTestGateway(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [tenant] })
  const document = await (await fetch(`${url}/openapi.json`)).json() as Document
  // Path parameters name the caller's own resources, so they have no examples (one would answer
  // 404 to everyone): the test fills them with a task of its own.
  const created = await fetch(`${url}/v1/videos/generations`, { method: 'POST', headers: { authorization: tenant.authorization, 'content-type': 'application/json' }, body: JSON.stringify(validBody) })
  t.equal(created.status, 200)
  const ownId = (await created.json() as { id: string }).id
  const pathValues: Record<string, string> = { task_id: ownId, video_id: ownId }

  const { sent, withoutExample } = await sendExamples(t, { url, document, authorization: tenant.authorization, pathValues, include: (path) => !path.startsWith('/admin/') })
  // A request body without an example gets one composed by Swagger UI from every property's
  // type (models: ["string"], an origin the tenant does not allow), which the gateway refuses.
  t.same(withoutExample, [], 'every request body has an example')
  t.ok(sent >= 6, `${sent} examples sent (create, tokens, OpenAI create as JSON and as a form, usage, video list)`)
})

// The admin API's examples, as an operator's "Try it out" sends them: to a gateway in database
// mode, with an admin token, on a tenant and a key of the test's own for the path parameters.
t.test('every admin example gets its documented success from a gateway in database mode', async (t) => {
  const databaseUrl = await migratedDatabase(t)
  if (databaseUrl === null) return
  const upstream = await startTestSimulator(t)
  const app = await buildDatabaseTestApp(t, { databaseUrl, upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY })
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  const admin = { authorization: adminAuthorization, 'content-type': 'application/json' }
  const own = await fetch(`${url}/admin/v1/tenants`, { method: 'POST', headers: admin, body: JSON.stringify({ id: 'examples-own' }) })
  t.equal(own.status, 201, 'a tenant of the test\'s own')
  const key = await fetch(`${url}/admin/v1/tenants/examples-own/keys`, { method: 'POST', headers: admin, body: JSON.stringify({ label: 'examples' }) })
  t.equal(key.status, 201, 'and a key')
  const keyId = (await key.json() as { id: string }).id
  const document = await (await fetch(`${url}/openapi.json`)).json() as Document
  const { sent, withoutExample } = await sendExamples(t, { url, document, authorization: adminAuthorization, pathValues: { tenant_id: 'examples-own', key_id: keyId }, include: (path) => path.startsWith('/admin/') })
  t.same(withoutExample, [], 'every admin request body has an example')
  t.ok(sent >= 4, `${sent} admin examples sent (tenant create and update, key create and update)`)
})
