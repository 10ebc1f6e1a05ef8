// Consistency of openapi/*.yaml and of the generated schemas the gateway relies on.
import { readFileSync } from 'node:fs'
import { join, posix } from 'node:path'
import Fastify from 'fastify'
import t from 'tap'
import type { TSchema } from 'typebox'
import { Compile } from 'typebox/compile'
import { parse } from 'yaml'
import { listYamlFiles } from '../../scripts/lib/generate-all.ts'
import * as evolink from '../../src/schemas/generated/evolink.ts'
import * as veo from '../../src/schemas/generated/veo-3.1-fast.ts'

const openapiDir = join(import.meta.dirname, '..', '..', 'openapi')
const documents = new Map<string, unknown>(
  listYamlFiles(openapiDir).map(file => [file, parse(readFileSync(join(openapiDir, file), 'utf8'))])
)
const generated: Record<string, unknown> = { ...evolink, ...veo }

function isRecord (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function resolvePointer (document: unknown, pointer: string): unknown {
  let node = document
  for (const raw of pointer.split('/').slice(1)) {
    const key = raw.replaceAll('~1', '/').replaceAll('~0', '~')
    node = isRecord(node) ? node[key] : undefined
  }
  return node
}

/** Calls `visit` for every object in `node`, with its JSON pointer. */
function walk (node: unknown, pointer: string, visit: (node: Record<string, unknown>, pointer: string) => void): void {
  if (Array.isArray(node)) node.forEach((x, i) => walk(x, `${pointer}/${i}`, visit))
  else if (isRecord(node)) {
    visit(node, pointer)
    for (const [k, x] of Object.entries(node)) {
      walk(x, `${pointer}/${k.replaceAll('~', '~0').replaceAll('/', '~1')}`, visit)
    }
  }
}

/** The generated schema a `$ref` names: its last path segment is the export name. */
function schemaFor (ref: string): TSchema {
  const name = ref.split('/').pop() as string
  const schema = generated[name]
  if (schema === undefined) throw new Error(`no generated schema ${name} for ${ref}`)
  return schema as TSchema
}

t.test('every $ref resolves (local and across files)', async t => {
  let count = 0
  for (const [file, document] of documents) {
    walk(document, '', (node, pointer) => {
      if (typeof node.$ref !== 'string') return
      count++
      const [target = '', fragment = ''] = node.$ref.split('#')
      const targetFile = target === '' ? file : posix.join(posix.dirname(file), target)
      const targetDocument = documents.get(targetFile)
      t.ok(targetDocument, `${file}#${pointer}: file ${targetFile} exists`)
      t.ok(resolvePointer(targetDocument, fragment) !== undefined, `${file}#${pointer}: ${node.$ref} resolves`)
    })
  }
  t.ok(count > 10)
})

t.test('examples in the documents validate against the generated schemas', async t => {
  let count = 0
  const document = documents.get('evolink.yaml')
  walk(document, '', (node, pointer) => {
    const schema = node.schema
    if (!pointer.includes('/content/') || !isRecord(schema) || typeof schema.$ref !== 'string') return
    const validator = Compile(schemaFor(schema.$ref))
    const examples = [
      ...('example' in node ? [node.example] : []),
      ...Object.values(isRecord(node.examples) ? node.examples : {}).map(e => (e as { value: unknown }).value)
    ]
    for (const example of examples) {
      count++
      t.ok(validator.Check(example), `${pointer}: example is a valid ${schema.$ref.split('/').pop()}`, {
        errors: validator.Errors(example)
      })
    }
  })
  t.ok(count >= 16, `${count} examples checked`)
  const request = documents.get('models/veo-3.1-fast.yaml')
  const requestExamples = resolvePointer(request, '/components/schemas/VideoGenerationRequest/examples')
  t.ok(Array.isArray(requestExamples))
  for (const example of requestExamples as unknown[]) t.ok(Compile(veo.VideoGenerationRequest).Check(example))
})

t.test('every documented error status is described', async t => {
  const document = documents.get('evolink.yaml')
  const statuses = (path: string, method: string): string[] =>
    Object.keys(resolvePointer(document, `/paths/${path.replaceAll('/', '~1')}/${method}/responses`) as object)
  t.same(statuses('/v1/videos/generations', 'post'), ['200', '400', '401', '402', '403', '429', '500'])
  t.same(statuses('/v1/tasks/{task_id}', 'get'), ['200', '400', '401', '402', '403', '404', '429', '500'])
  const description = resolvePointer(document, '/paths/~1v1~1videos~1generations/post/description') as string
  for (const status of ['413', '502', '503', '524']) t.match(description, status)
  t.match(resolvePointer(document, '/paths/~1v1~1tasks~1{task_id}/get/responses/400/content/application~1json/example'), {
    error: { code: 'invalid_task_id', param: 'task_id' }
  })
})

t.test('response schemas: only id and status required, open status, unknown fields allowed', async t => {
  const options = (schema: unknown): Record<string, unknown> => schema as Record<string, unknown>
  for (const name of ['VideoGenerationTask', 'TaskError', 'TaskInfo', 'Usage', 'ErrorResponse'] as const) {
    t.equal(options(evolink[name]).additionalProperties, true, `${name} allows unknown fields`)
  }
  t.equal(options(evolink.ErrorResponse.properties.error).additionalProperties, true)
  t.same(evolink.VideoGenerationTask.required, ['id', 'status'])
  t.same(evolink.TaskError.required ?? [], [])
  t.same(evolink.ErrorResponse.properties.error.required, ['code', 'message', 'type'])
  t.notOk('enum' in evolink.VideoGenerationTask.properties.status)
  t.same(evolink.Usage.properties.billing_rule.enum, ['per_call', 'per_token', 'per_second'])

  const check = Compile(evolink.VideoGenerationTask)
  t.ok(check.Check({ id: 'task-unified-1', status: 'cancelled', brand_new_field: { x: 1 } }))
  t.ok(check.Check({ id: 'task-unified-1', status: 'failed', error: { code: 'service_error', extra: true } }))
  t.notOk(check.Check({ id: 'task-unified-1' }))
  t.notOk(check.Check({ id: 'task-unified-1', status: 'pending', progress: 101 }))
  t.notOk(check.Check({ id: 'task-unified-1', status: 'pending', usage: { billing_rule: 'per_year' } }))
})

t.test('Fastify serialises unknown task fields through', async t => {
  const app = Fastify()
  app.get('/task', { schema: { response: { 200: evolink.VideoGenerationTask } } }, async () => ({
    id: 'task-unified-1',
    status: 'cancelled',
    progress: 10,
    task_info: { can_cancel: false, queue_position: 3 },
    surprise: 'kept'
  }))
  t.teardown(() => app.close())
  const res = await app.inject({ method: 'GET', url: '/task' })
  t.same(res.json(), {
    id: 'task-unified-1',
    status: 'cancelled',
    progress: 10,
    task_info: { can_cancel: false, queue_position: 3 },
    surprise: 'kept'
  })
})

t.test('static types', async t => {
  const task: evolink.VideoGenerationTask = { id: 'task-unified-1', status: 'cancelled' }
  const usage: evolink.Usage = { billing_rule: 'per_second' }
  const error: evolink.ErrorResponse = { error: { code: 'c', message: 'm', type: 't' } }
  const body: veo.VideoGenerationRequest = { model: 'm', prompt: 'p', duration: 8, quality: '4k', aspect_ratio: 'auto' }
  // @ts-expect-error duration is 4 | 6 | 8
  const badDuration: veo.VideoGenerationRequest['duration'] = 5
  // @ts-expect-error prompt is required
  const noPrompt: veo.VideoGenerationRequest = { model: 'm' }
  t.ok([task, usage, error, body, badDuration, noPrompt].length)
})
