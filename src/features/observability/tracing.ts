import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { defaultTextMapGetter, defaultTextMapSetter, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Span, type Tracer } from '@opentelemetry/api'
import type { AttemptTrace, UpstreamCall, UpstreamTracing } from '../upstream/client.ts'

export interface TracingOptions {
  /** OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: the full URL spans are posted to */
  tracesEndpoint: string
  /** OTEL_EXPORTER_OTLP_ENDPOINT: the collector's base URL (`/v1/traces` is added) */
  endpoint: string
  serviceName: string
  serviceVersion: string
}

/** Longest one export (a batch of spans) may take. */
const exportTimeoutMs = 3000

declare module 'fastify' {
  interface FastifyInstance {
    /** around each upstream attempt (upstream/client.ts); null when tracing is off */
    tracing: UpstreamTracing | null
  }
  interface FastifyRequest {
    /** this request's server span, when tracing is on */
    span: Span | null
  }
}

/** Where spans go: the traces endpoint as given, else the base endpoint's `/v1/traces` (the OTLP/HTTP convention); '' is off. */
export function tracesUrl (options: Pick<TracingOptions, 'tracesEndpoint' | 'endpoint'>): string {
  if (options.tracesEndpoint !== '') return options.tracesEndpoint
  if (options.endpoint === '') return ''
  return `${options.endpoint.replace(/\/+$/, '')}/v1/traces`
}

/**
 * OpenTelemetry tracing, off unless an OTLP endpoint is configured: a server
 * span per request (a child of the caller's W3C `traceparent`, when it sends
 * one), a client span per upstream attempt (whose `traceparent` goes to the
 * upstream), exported over OTLP/HTTP in batches. The provider is this app's
 * own, not the global one, and parents are passed explicitly rather than
 * through a context manager: nothing global to set up or to leak between apps.
 * Spans carry the route template, never the URL: query strings hold browser
 * tokens and link signatures.
 */
async function tracingPlugin (fastify: FastifyInstance, options: TracingOptions): Promise<void> {
  fastify.decorateRequest('span', null)
  const url = tracesUrl(options)
  if (url === '') {
    fastify.decorate('tracing', null)
    return
  }
  // Loaded only when tracing is on: the SDK and its OTLP exporter weigh ~25 MB of memory
  // (measured as RSS), which a gateway without a collector would carry for nothing.
  const [{ W3CTraceContextPropagator }, { OTLPTraceExporter }, { resourceFromAttributes }, { BatchSpanProcessor, TracerProvider }] = await Promise.all([
    import('@opentelemetry/core'),
    import('@opentelemetry/exporter-trace-otlp-http'),
    import('@opentelemetry/resources'),
    import('@opentelemetry/sdk-trace')
  ])
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ 'service.name': options.serviceName, 'service.version': options.serviceVersion }),
    // Short export deadlines: a collector that does not answer must not hold up shutdown
    // (the last batch is flushed on close) for the SDK's default 30 s.
    spanProcessors: [new BatchSpanProcessor({ exporter: new OTLPTraceExporter({ url, timeoutMillis: exportTimeoutMs }), exportTimeoutMillis: exportTimeoutMs })]
  })
  const tracer: Tracer = provider.getTracer('video-gateway', options.serviceVersion)
  const propagator = new W3CTraceContextPropagator()

  fastify.addHook('onRequest', (request, _reply, done) => {
    const parent = propagator.extract(ROOT_CONTEXT, request.headers, defaultTextMapGetter)
    const route = request.routeOptions.url
    request.span = tracer.startSpan(route === undefined ? request.method : `${request.method} ${route}`, {
      kind: SpanKind.SERVER,
      attributes: { 'http.request.method': request.method, ...(route === undefined ? {} : { 'http.route': route }) }
    }, parent)
    done()
  })
  fastify.addHook('onResponse', (request, reply, done) => {
    const span = request.span
    if (span !== null) {
      span.setAttribute('http.response.status_code', reply.statusCode)
      if (request.tenant !== undefined && request.tenant !== null) span.setAttribute('video_gateway.tenant', request.tenant.id)
      if (reply.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR })
      span.end()
    }
    done()
  })
  fastify.addHook('onRequestAbort', (request, done) => {
    request.span?.setStatus({ code: SpanStatusCode.ERROR, message: 'client aborted' })
    request.span?.end()
    done()
  })

  const tracing: UpstreamTracing = {
    async attempt<T> (call: UpstreamCall, run: (attempt: AttemptTrace) => Promise<T>): Promise<T> {
      // A caller's request is the parent; the gateway's own background reads start a trace of their own.
      const parent = call.request?.span == null ? ROOT_CONTEXT : trace.setSpan(ROOT_CONTEXT, call.request.span)
      const span = tracer.startSpan(`upstream ${call.method}`, {
        kind: SpanKind.CLIENT,
        attributes: { 'http.request.method': call.method }
      }, parent)
      const headers: Record<string, string> = {}
      propagator.inject(trace.setSpan(ROOT_CONTEXT, span), headers, defaultTextMapSetter)
      try {
        return await run({ headers, status: (code) => { span.setAttribute('http.response.status_code', code) } })
      } catch (error) {
        span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.name : 'error' })
        throw error
      } finally {
        span.end()
      }
    }
  }
  fastify.decorate('tracing', tracing)
  // Flushes what is batched: the spans of the last requests are not lost on shutdown. Tracing is
  // lossy by design: a collector that is down is logged, never a failed close.
  fastify.addHook('onClose', async () => {
    try {
      await provider.shutdown()
    } catch (error) {
      fastify.log.warn({ err: error }, 'tracing: the last spans could not be exported')
    }
  })
}

/** The trace and span id of a request, for its access-log line. */
export function traceIdsOf (request: FastifyRequest): { traceId: string, spanId: string } | undefined {
  const context = request.span?.spanContext()
  return context === undefined ? undefined : { traceId: context.traceId, spanId: context.spanId }
}

export default fp(tracingPlugin, { name: 'tracing', fastify: '5.x' })
