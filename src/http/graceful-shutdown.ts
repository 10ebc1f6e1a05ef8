import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { gatewayError } from '../errors/table.ts'

/**
 * While the app closes (SIGTERM, see server.ts), requests already running
 * finish with their real answers: Fastify's close waits for them. A request
 * that arrives after the close began (on a keep-alive connection that was
 * open already; the listener takes no new connections) is not processed: it
 * gets 503 shutting_down in the one error format, with `Connection: close`, so
 * the client's retry opens a new connection to another instance. Answers sent
 * while closing all say `Connection: close`, so that no connection outlives them.
 *
 * Fastify's own return503OnClosing answers such requests with a body of its
 * own format, so app.ts turns it off and this hook answers them instead.
 */
export interface ShutdownDrain {
  /** True from the drain's start (SIGTERM) on: `/readyz` answers 503, every answer says `Connection: close`. */
  readonly draining: boolean
  /** Aborted when the drain starts: long-lived answers (event streams) end with a reconnect hint. */
  readonly signal: AbortSignal
  /** Starts the drain (server.ts on SIGTERM/SIGINT); idempotent. Requests are still served normally. */
  begin (): void
}

declare module 'fastify' {
  interface FastifyInstance {
    shutdownDrain: ShutdownDrain
  }
}

async function gracefulShutdownPlugin (fastify: FastifyInstance): Promise<void> {
  let closing = false
  // The drain phase (before the close): served normally, but no connection is kept, so a client's
  // next request opens a new connection, which the load balancer sends to another instance.
  const drainStarted = new AbortController()
  const drain: ShutdownDrain = {
    get draining () { return drainStarted.signal.aborted },
    signal: drainStarted.signal,
    begin () { if (!drainStarted.signal.aborted) drainStarted.abort() }
  }
  fastify.decorate('shutdownDrain', drain)
  fastify.addHook('preClose', (done) => {
    closing = true
    drain.begin()
    done()
  })
  // Callback style: on the hot path it skips a promise per request.
  fastify.addHook('onRequest', (_request, _reply, done) => {
    if (!closing) {
      done()
      return
    }
    done(gatewayError('shutting_down', { headers: { 'retry-after': '1', connection: 'close' } }))
  })
  // The requests that were running when the close began end their connections with their
  // answers: Node closes only the connections idle at that moment, and a keep-alive one
  // left open would hold the close (and the process) until SHUTDOWN_GRACE_MS runs out.
  fastify.addHook('onSend', (_request, reply, payload, done) => {
    // (The close begins the drain too: this covers both phases.)
    if (drainStarted.signal.aborted) reply.header('connection', 'close')
    done(null, payload)
  })
  // A streamed answer (a video) whose headers went out before the close began could not say
  // `Connection: close`: when it ends, its connection is idle but kept alive, and Node's close
  // reaped idle connections only once, when it began. Left open, it held the close for the
  // keep-alive timeout (Fastify's default: 72 s). Once the answer is finished, close it.
  // (Node detaches the socket from the answer on 'finish' before Fastify's onResponse.)
  fastify.addHook('onResponse', (_request, _reply, done) => {
    if (closing) fastify.server.closeIdleConnections()
    done()
  })
}

export default fp(gracefulShutdownPlugin, { name: 'graceful-shutdown', fastify: '5.x' })
