import t from 'tap'
import { request } from 'undici'
import { freePort, startServerProcess } from '../../helpers/server-process.ts'

interface MediaType { example?: unknown, examples?: Record<string, { value: unknown }> }
interface Operation { requestBody?: { content?: Record<string, MediaType> }, responses: Record<string, unknown> }

// "Try it out" sends the document's request examples as they are: each must get a documented success.
t.test('every request example in /openapi.json is accepted by the gateway with a documented 2xx', async (t) => {
  const port = await freePort()
  const server = startServerProcess(t, { PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn' })
  const [, key] = await server.waitFor(/Demo tenant key: (vgk_\S+)/) as [string, string]
  const base = `http://127.0.0.1:${port}`
  const document = await (await request(`${base}/openapi.json`)).body.json() as { paths: Record<string, Record<string, Operation>> }
  let sent = 0
  for (const [path, operations] of Object.entries(document.paths)) {
    for (const [method, operation] of Object.entries(operations)) {
      const json = operation.requestBody?.content?.['application/json']
      if (json === undefined || path.includes('{')) continue
      const examples = [...(json.example === undefined ? [] : [json.example]), ...Object.values(json.examples ?? {}).map(entry => entry.value)]
      for (const example of examples) {
        const answer = await request(`${base}${path}`, { method: method.toUpperCase() as 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(example) })
        const text = await answer.body.text()
        const documented = Object.keys(operation.responses).filter(status => status.startsWith('2'))
        t.ok(documented.includes(String(answer.statusCode)), `${method.toUpperCase()} ${path} example ${JSON.stringify(example)}: ${answer.statusCode} ${text.slice(0, 200)}`)
        sent++
      }
    }
  }
  t.ok(sent >= 1, 'the create operation has a request example')
  server.child.kill('SIGTERM')
  t.equal(await server.exited, 0)
})
