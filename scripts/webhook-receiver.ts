import { createServer } from 'node:http'
import { Webhook } from 'standardwebhooks'

/**
 * `npm run webhook-receiver`: a loopback receiver for the gateway's signed webhooks.
 * It verifies each delivery with the tenant's webhook secret (WEBHOOK_SECRET, the
 * whsec_... that simulator mode prints) on the raw body, prints each verified event
 * as one JSON line, and answers 204 (401 to a bad signature, so the gateway retries).
 * WEBHOOK_RECEIVER_PORT (default 9000); it listens on 127.0.0.1 only.
 */
const secret = process.env.WEBHOOK_SECRET ?? ''
if (!secret.startsWith('whsec_')) {
  console.error('webhook-receiver: set WEBHOOK_SECRET to the tenant webhook secret (whsec_...)')
  process.exit(1)
}
const webhook = new Webhook(secret)
const port = Number(process.env.WEBHOOK_RECEIVER_PORT ?? 9000)

const server = createServer((request, response) => {
  const chunks: Buffer[] = []
  request.on('data', (chunk: Buffer) => chunks.push(chunk))
  request.on('end', () => {
    const body = Buffer.concat(chunks).toString('utf8')
    const headers = {
      'webhook-id': String(request.headers['webhook-id'] ?? ''),
      'webhook-timestamp': String(request.headers['webhook-timestamp'] ?? ''),
      'webhook-signature': String(request.headers['webhook-signature'] ?? '')
    }
    try {
      const event = webhook.verify(body, headers) // throws on a bad signature or a timestamp over 5 min off
      console.log(JSON.stringify({ verified: true, webhookId: headers['webhook-id'], event }))
      response.writeHead(204).end()
    } catch (error) {
      console.error(`webhook-receiver: refused a delivery (${(error as Error).message})`)
      response.writeHead(401).end()
    }
  })
})
server.listen(port, '127.0.0.1', () => console.log(`webhook-receiver listening on http://127.0.0.1:${port}/ (any path)`))
process.on('SIGTERM', () => server.close())
process.on('SIGINT', () => server.close())
