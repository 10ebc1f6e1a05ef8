import { Agent, request } from 'undici'
import { Webhook } from 'standardwebhooks'
import type { AttemptOutcome } from './schedule.ts'
import { parseRetryAfter } from '../../http/retry-after.ts'
import { DestinationError, guardedLookup, staticUrlProblem, type DestinationPolicy, type LookupFunction } from '../../http/destination.ts'

export interface WebhookMessage {
  /** the `webhook-id`: the same on every attempt, so receivers can de-duplicate */
  id: string
  url: string
  /** the exact body signed and sent */
  payload: string
  /** the tenant's `whsec_` secrets: each one signs (several signatures let a receiver rotate) */
  secrets: readonly string[]
}

export interface WebhookSender {
  send (message: WebhookMessage, signal: AbortSignal): Promise<AttemptOutcome>
  close (): Promise<void>
}

/** How much of a receiver's answer is read (and thrown away) before the connection is reused. */
const maxDrainBytes = 65_536

/**
 * Outgoing webhook deliveries: their own connection pool, apart from the
 * upstream's; a deadline on the whole attempt; redirects are not followed (a
 * 3xx is a failed attempt); and the SSRF rules are checked on the address the
 * socket connects to (the lookup), so DNS rebinding after the create-time
 * check does not help. Addresses written in the URL never reach a lookup, so
 * they are checked here before connecting.
 */
export function createWebhookSender (options: { policy: DestinationPolicy, timeoutMs: number, lookup?: LookupFunction, userAgent?: string }): WebhookSender {
  const agent = new Agent({
    connect: { lookup: guardedLookup({ policy: options.policy, lookup: options.lookup }) as never, timeout: options.timeoutMs },
    headersTimeout: options.timeoutMs,
    bodyTimeout: options.timeoutMs,
    connections: 64
  })
  return {
    async send (message, signal) {
      const problem = staticUrlProblem(message.url, options.policy)
      if (problem !== null) return { statusCode: null, error: `destination refused: the URL ${problem}` }
      // The receiver checks the timestamp against its own clock: sign with the wall clock.
      const sentAt = new Date()
      const signature = message.secrets.map((secret) => new Webhook(secret).sign(message.id, sentAt, message.payload)).join(' ')
      try {
        const answer = await request(message.url, {
          method: 'POST',
          dispatcher: agent,
          headers: {
            'content-type': 'application/json',
            'user-agent': options.userAgent ?? 'video-gateway-webhooks',
            'webhook-id': message.id,
            'webhook-timestamp': String(Math.floor(sentAt.getTime() / 1000)),
            'webhook-signature': signature
          },
          body: message.payload,
          signal: AbortSignal.any([signal, AbortSignal.timeout(options.timeoutMs)])
        })
        await answer.body.dump({ limit: maxDrainBytes }).catch(() => {})
        const retryAfterMs = parseRetryAfter(answer.headers['retry-after'], Date.now())
        return { statusCode: answer.statusCode, ...(retryAfterMs === undefined ? {} : { retryAfterMs }) }
      } catch (error) {
        return { statusCode: null, error: describeFailure(error) }
      }
    },
    async close () { await agent.close() }
  }
}

/** A short reason for the deliveries API: never the URL (it may carry the receiver's own token). */
function describeFailure (error: unknown): string {
  const cause = (error as { cause?: unknown }).cause
  if (error instanceof DestinationError || cause instanceof DestinationError) return `destination refused: ${(cause instanceof DestinationError ? cause : error as Error).message}`
  const name = (error as Error).name
  if (name === 'TimeoutError' || name === 'HeadersTimeoutError' || name === 'BodyTimeoutError' || name === 'ConnectTimeoutError') return 'timed out'
  if (name === 'AbortError') return 'aborted'
  const code = (error as { code?: string }).code ?? (cause as { code?: string } | undefined)?.code
  if (code === 'EDESTINATIONREFUSED') return 'destination refused'
  return code === undefined ? 'connection failed' : `connection failed (${code})`
}
