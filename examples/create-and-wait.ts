// Creates a video task through the gateway and waits for it, with the typed client.
// GATEWAY_URL and GATEWAY_KEY (a tenant key) say where and who; see docs/client.md.
import { createGatewayClient } from 'video-gateway/client'

const client = createGatewayClient({ baseUrl: process.env.GATEWAY_URL ?? 'http://127.0.0.1:8080', key: process.env.GATEWAY_KEY ?? '' })
const created = await client.POST('/v1/videos/generations', { body: { model: 'veo-3.1-fast-generate-preview', prompt: 'A cat playing piano' } })
if (created.error !== undefined) throw new Error(`create: ${created.error.error.code}: ${created.error.error.message}`)
let task = created.data
while (task.status !== 'completed' && task.status !== 'failed') {
  // Long-poll: the gateway answers as soon as the status or progress changes (or after 30 s).
  const read = await client.GET('/v1/tasks/{task_id}', { params: { path: { task_id: task.id }, query: { wait: '30' } } })
  if (read.error !== undefined) throw new Error(`read: ${read.error.error.code}: ${read.error.error.message}`)
  task = read.data
}
console.log(task.status, task.results?.join(' ') ?? task.error?.message)
