import { Writable } from 'node:stream'
import type { FastifyInstance } from 'fastify'
import { buildApp, type BuildAppOptions } from '../../src/app.ts'
import type { Config } from '../../src/config.ts'
import { tenantKeyHash } from '../../src/features/tenants/registry.ts'
import { captureForLeakScan } from './leak-capture.ts'
import type { TenantDefinition } from '../../src/schemas/tenants.ts'

/** Anything with tap's teardown (a Test). */
export interface HasTeardown {
  teardown (fn: () => unknown): void
}

export const testGatewaySecret = 'test-gateway-secret-0123456789-abcdefghij'

export interface TestTenant {
  id: string
  /** the plaintext key a caller sends; the gateway only ever sees its hash */
  key: string
  authorization: string
  definition: TenantDefinition
}

let tenantCounter = 0

/**
 * A tenant with a fresh key. Ids get a per-process suffix so that tests sharing
 * the real Redis never share rate-limit counters by accident.
 */
export function makeTenant (id: string, definition: Partial<Omit<TenantDefinition, 'id' | 'keys'>> = {}): TestTenant {
  tenantCounter += 1
  const uniqueId = `${id}-${process.pid}-${tenantCounter}-${Date.now().toString(36)}`
  const key = `vgk_test_${uniqueId}_${Math.random().toString(36).slice(2)}`
  return {
    id: uniqueId,
    key,
    authorization: `Bearer ${key}`,
    definition: { id: uniqueId, keys: [tenantKeyHash(key)], ...definition }
  }
}

/** Collects every log line the app writes, parsed (and hands each to the leak scan). */
export function logCollector (): { lines: Array<Record<string, unknown>>, stream: Writable } {
  const lines: Array<Record<string, unknown>> = []
  const stream = new Writable({
    write (chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line === '') continue
        captureForLeakScan('log', line)
        lines.push(JSON.parse(line))
      }
      callback()
    }
  })
  return { lines, stream }
}

export interface TestAppOptions extends Omit<BuildAppOptions, 'config' | 'tenants'> {
  upstreamUrl: string
  upstreamKey: string
  tenants: readonly TestTenant[]
  config?: Partial<Config>
}

/** A gateway app (not listening) against the given upstream; closed at teardown. */
export async function buildTestApp (t: HasTeardown, options: TestAppOptions): Promise<FastifyInstance> {
  const { upstreamUrl, upstreamKey, tenants, config, ...rest } = options
  const app = await buildApp({
    // Logs go to the leak scan unless the test collects them itself.
    logger: { level: 'info', stream: logCollector().stream },
    ...rest,
    config: {
      evolinkBaseUrl: upstreamUrl,
      // The simulator serves the files API on its one origin; never the real one from a test.
      evolinkFilesUrl: upstreamUrl,
      evolinkApiKey: upstreamKey,
      gatewaySecret: testGatewaySecret,
      upstreamTimeoutMs: 2000,
      ...config
    },
    tenants: tenants.map((tenant) => tenant.definition)
  })
  // Test-side tap on every answer, for the key-leak scan (test/leak-scan/after.ts).
  app.addHook('onSend', async (_request, reply, payload) => {
    captureForLeakScan('response', JSON.stringify({ status: reply.statusCode, headers: reply.getHeaders(), body: typeof payload === 'string' ? payload : String(payload) }))
    return payload
  })
  t.teardown(() => app.close())
  return app
}

/** The same, listening on 127.0.0.1 port 0; returns its base URL. */
export async function startTestGateway (t: HasTeardown, options: TestAppOptions): Promise<{ app: FastifyInstance, url: string }> {
  const app = await buildTestApp(t, options)
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  return { app, url }
}

export const validBody = { model: 'veo-3.1-fast-generate-preview', prompt: 'A cat playing piano' }

/** Asserts the one error format, whole: every field, nothing more. */
export function expectedError (code: string, type: string, message: string | RegExp, requestId: string | RegExp = /.+/, param?: string): Record<string, unknown> {
  return { error: { code, type, message, request_id: requestId, ...(param === undefined ? {} : { param }) } }
}
