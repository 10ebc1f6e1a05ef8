import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { CLIENT_TYPES_PATH, clientTypesHeader, gatewayDocument, generateClientTypes } from '../../scripts/generate-client.ts'

const root = join(import.meta.dirname, '..', '..')

t.test('the checked-in client types are those of the gateway\'s current /openapi.json', async (t) => {
  const onDisk = readFileSync(join(root, CLIENT_TYPES_PATH), 'utf8')
  const fresh = await generateClientTypes()
  // Not t.equal: a 2,600-line diff in the failure helps no one; the message says what to do.
  t.ok(onDisk === fresh, `${CLIENT_TYPES_PATH} matches the gateway's /openapi.json (if not: run \`npm run generate\`)`)
  t.ok(onDisk.startsWith(clientTypesHeader), 'marked as generated')
  t.match(onDisk, /^export interface paths \{$/m)
})

t.test('a change to the document changes the generated types (the check above can fail)', async (t) => {
  const document = await gatewayDocument()
  const fresh = await generateClientTypes(document)
  const paths = document.paths ?? {}
  paths['/v1/brand-new'] = { get: { operationId: 'brandNew', responses: { 200: { description: 'ok' } } } }
  const changed = await generateClientTypes(document)
  t.not(changed, fresh)
  t.match(changed, '"/v1/brand-new"')
  t.notMatch(fresh, '"/v1/brand-new"')
})

t.test('generation leaves no secret of its own in the types', async (t) => {
  const text = await generateClientTypes()
  t.notMatch(text, 'not-used-by-generation')
  t.notMatch(text, 'generation-only-secret')
})
