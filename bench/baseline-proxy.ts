import Fastify, { type FastifyReply } from 'fastify'
import { Pool } from 'undici'
import { announcePort, exitWithParent } from './child-protocol.ts'

/**
 * The baseline: the thinnest honest proxy for the same two routes. Fastify
 * with its defaults (JSON body parsing on, logger off) and an undici Pool of
 * the same size as the gateway's, forwarding with a fixed upstream key and
 * passing the upstream's status and body back as they come. No auth, no
 * validation, no limits, no logging, no timeouts: what any gateway costs
 * beyond this is the price of its features.
 *
 *   node bench/baseline-proxy.ts <upstream origin> <upstream key> <pool connections>
 */
const [origin, apiKey, connections] = process.argv.slice(2)
if (origin === undefined || apiKey === undefined || connections === undefined) {
  throw new Error('usage: node bench/baseline-proxy.ts <upstream origin> <upstream key> <pool connections>')
}

const pool = new Pool(origin, { connections: Number(connections), pipelining: 1, keepAliveTimeout: 30_000 })
const authorization = `Bearer ${apiKey}`
const app = Fastify({ logger: false })

async function forward (method: 'GET' | 'POST', path: string, body: unknown, reply: FastifyReply): Promise<string> {
  const response = await pool.request({
    method,
    path,
    headers: body === undefined
      ? { authorization, accept: 'application/json' }
      : { authorization, accept: 'application/json', 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body)
  })
  reply.code(response.statusCode)
  reply.header('content-type', String(response.headers['content-type'] ?? 'application/json'))
  return await response.body.text()
}

app.post('/v1/videos/generations', async (request, reply) => forward('POST', '/v1/videos/generations', request.body, reply))
app.get<{ Params: { task_id: string } }>('/v1/tasks/:task_id', async (request, reply) => {
  return forward('GET', `/v1/tasks/${encodeURIComponent(request.params.task_id)}`, undefined, reply)
})

await app.listen({ port: 0, host: '127.0.0.1' })
announcePort(app.server)
exitWithParent(async () => {
  await app.close()
  await pool.close()
})
