import type { FastifyInstance } from 'fastify'
import { buildApp, type BuildAppOptions } from '../../src/app.ts'
import type { Config } from '../../src/config.ts'
import { runMigrations } from '../../src/features/database/migrate.ts'
import { tenantKeyHash } from '../../src/features/tenants/registry.ts'
import { captureForLeakScan } from './leak-capture.ts'
import { logCollector, testGatewaySecret, type HasTeardown } from './gateway.ts'
import { postgresForTests } from './postgres.ts'

/** An admin token for tests, and the hash ADMIN_TOKENS lists (the same `sha256:` form as tenant keys). */
export const testAdminToken = 'vga_test_admin_token_0123456789abcdefghijklmnop'
export const testAdminTokenHash = tenantKeyHash(testAdminToken)
export const adminAuthorization = `Bearer ${testAdminToken}`

export const silentLog = { info () {}, warn () {}, error () {} }

/**
 * A fresh, migrated database of the test's own (dropped at teardown), or null after a loud
 * skip message (postgresForTests; REQUIRE_POSTGRES=1 turns a missing server into a failure).
 */
export async function migratedDatabase (t: HasTeardown & { comment: (message: string) => void }): Promise<string | null> {
  const database = await postgresForTests()
  if ('skip' in database) {
    t.comment(database.skip)
    return null
  }
  t.teardown(database.cleanup)
  await runMigrations({ databaseUrl: database.url, log: silentLog })
  return database.url
}

export interface DatabaseAppOptions extends Omit<BuildAppOptions, 'config' | 'tenants'> {
  databaseUrl: string
  upstreamUrl: string
  upstreamKey: string
  config?: Partial<Config>
}

/** A gateway in database mode (tenants from PostgreSQL, the test admin token accepted); closed at teardown. */
export async function buildDatabaseTestApp (t: HasTeardown, options: DatabaseAppOptions): Promise<FastifyInstance> {
  const { databaseUrl, upstreamUrl, upstreamKey, config, ...rest } = options
  const app = await buildApp({
    logger: { level: 'info', stream: logCollector().stream },
    ...rest,
    config: {
      evolinkBaseUrl: upstreamUrl,
      evolinkApiKey: upstreamKey,
      gatewaySecret: testGatewaySecret,
      upstreamTimeoutMs: 2000,
      databaseUrl,
      adminTokens: testAdminTokenHash,
      ...config
    }
  })
  app.addHook('onSend', async (_request, reply, payload) => {
    captureForLeakScan('response', JSON.stringify({ status: reply.statusCode, headers: reply.getHeaders(), body: typeof payload === 'string' ? payload : String(payload) }))
    return payload
  })
  t.teardown(() => app.close())
  return app
}

/** Polls `check` (no fixed sleeps) until it returns true or `withinMs` passes; answers whether it did, and when. */
export async function eventually (check: () => Promise<boolean>, withinMs: number, everyMs = 10): Promise<{ ok: boolean, afterMs: number }> {
  const started = performance.now()
  for (;;) {
    if (await check()) return { ok: true, afterMs: performance.now() - started }
    if (performance.now() - started > withinMs) return { ok: false, afterMs: performance.now() - started }
    await new Promise((resolve) => setTimeout(resolve, everyMs))
  }
}
