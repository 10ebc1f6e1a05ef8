import { createServer, type IncomingHttpHeaders } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance } from 'fastify'
import type { HasTeardown } from './gateway.ts'

/** A Standard Webhooks secret for test tenants (24 bytes, base64). */
export const testWebhookSecret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'

/** Loopback receivers are allow-listed in the tests' gateway config (the only way they are reachable). */
export const loopbackAllowList = '127.0.0.1/32'

export interface ReceivedWebhook {
  path: string
  headers: IncomingHttpHeaders
  body: string
}

export interface Answer {
  status: number
  headers?: Record<string, string>
  /** never answer (the connection stays open until the caller gives up or the receiver closes) */
  hang?: boolean
  /** answer this much later (a slow receiver) */
  delayMs?: number
}

export interface Receiver {
  url: string
  received: ReceivedWebhook[]
  /** answers to give, in order; when none is left: 200 */
  answers: Answer[]
  /** resolves when the receiver has got `count` requests in all */
  receivedCount (count: number): Promise<void>
}

/** An HTTP receiver on 127.0.0.1 that records every request and answers from a queue; closed at teardown. */
export async function startReceiver (t: HasTeardown): Promise<Receiver> {
  const received: ReceivedWebhook[] = []
  const answers: Answer[] = []
  const waiters: Array<{ count: number, resolve: () => void }> = []
  const server = createServer((request, response) => {
    const chunks: Buffer[] = []
    request.on('data', (chunk: Buffer) => chunks.push(chunk))
    request.on('end', () => {
      received.push({ path: request.url ?? '', headers: request.headers, body: Buffer.concat(chunks).toString('utf8') })
      const answer = answers.shift() ?? { status: 200 }
      if (answer.hang !== true) setTimeout(() => { response.writeHead(answer.status, answer.headers).end('ok') }, answer.delayMs ?? 0)
      for (const waiter of [...waiters]) {
        if (received.length >= waiter.count) {
          waiters.splice(waiters.indexOf(waiter), 1)
          waiter.resolve()
        }
      }
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}/hooks/video`,
    received,
    answers,
    async receivedCount (count) {
      if (received.length >= count) return
      await new Promise<void>((resolve) => waiters.push({ count, resolve }))
    }
  }
}

/** A clock the tests move by hand (the retry schedule's, and the simulator's). */
export function manualClock (start = Date.now()): { now: () => number, advance (ms: number): void } {
  let current = start
  return { now: () => current, advance (ms) { current += ms } }
}

/** A free port on 127.0.0.1 (for a gateway whose PUBLIC_BASE_URL must be known before it listens). */
export { freePort } from './server-process.ts'

/**
 * WEBHOOK_POLL_INTERVAL_MS of tests that move the gateway's clock by hand: the
 * worker looks at the queue this often in real time, and finds a retry due
 * only once the moved clock says so.
 */
export const testWebhookPollMs = 10

/** Long enough for many worker polls: a test that expects no attempt waits this long before it says so. */
export async function webhookQuietPeriod (): Promise<void> {
  await sleep(15 * testWebhookPollMs)
}

/**
 * Waits until a client sees `count` attempts recorded in all on the task's
 * deliveries (GET /v1/webhooks/deliveries), as the worker makes them on its
 * own (a new delivery at once, a retry at the first poll after it is due);
 * answers the listing then, or as it is after `timeoutMs`.
 */
export async function attemptsRecorded (app: Pick<FastifyInstance, 'inject'>, authorization: string, taskId: string, count: number, timeoutMs = 10_000): Promise<Array<Record<string, any>>> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const listed = await app.inject({ method: 'GET', url: `/v1/webhooks/deliveries?task_id=${encodeURIComponent(taskId)}`, headers: { authorization } })
    const data = listed.json().data as Array<{ attempts: unknown[] }>
    if (data.reduce((sum, delivery) => sum + delivery.attempts.length, 0) >= count || Date.now() > deadline) return data
    await sleep(testWebhookPollMs)
  }
}
