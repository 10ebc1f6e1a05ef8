import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { readTenantsFile, tenantKeyHash } from '../src/features/tenants/registry.ts'
import { runMigrations } from '../src/features/database/migrate.ts'
import { importTenants } from '../src/features/admin/store.ts'
import { newKeyId } from '../src/features/admin/routes.ts'
import { completedTask, createBody, createdTask } from './fixtures.ts'

/** The gateway's side of a bench run: build, secrets, tenants file, env, and a first check of each server. */
export function buildGateway (root: string): void {
  const started = Date.now()
  const result = spawnSync('npm', ['run', '--silent', 'build'], { cwd: root, stdio: 'inherit' })
  if (result.status !== 0) throw new Error(`npm run build failed (${result.error?.message ?? `exit ${result.status}`})`)
  process.stdout.write(`built dist/ in ${((Date.now() - started) / 1000).toFixed(1)} s\n`)
}

export interface BenchSecrets {
  /** a temporary directory: the tenants file, and the gateway's cwd (so no .env is read) */
  dir: string
  tenantKey: string
  tenantId: string
  /** a second tenant: the archive scenario reads its tasks while the first one's are archived */
  otherTenantKey: string
  otherTenantId: string
  upstreamKey: string
  /** signs tenant-scoped task ids: the bench mints ids for tasks it did not create through the gateway */
  gatewaySecret: string
  /** METRICS_TOKEN: the bench reads the gateway's own counters (vg_redis_writes_behind_total) */
  metricsToken: string
  gatewayEnv (upstreamUrl: string, redisUrl: string): Record<string, string>
  /** the tenants file the gateway reads in file mode (imported into the database in database mode) */
  tenantsFile: string
  remove (): void
}

export function prepareSecrets (): BenchSecrets {
  const dir = mkdtempSync(join(tmpdir(), 'video-gateway-bench-'))
  const tenantKey = 'vgk_bench_' + randomBytes(24).toString('base64url')
  const otherTenantKey = 'vgk_bench_' + randomBytes(24).toString('base64url')
  const upstreamKey = 'sk-bench-' + randomBytes(16).toString('hex')
  const gatewaySecret = randomBytes(48).toString('base64url')
  const metricsToken = randomBytes(24).toString('base64url')
  const tenantsFile = join(dir, 'tenants.json')
  // A fresh tenant id per run: Redis counters of an earlier run cannot interfere. Limits far above any load.
  const unlimited = { max: 1_000_000_000, timeWindow: 60_000 }
  const tenantId = `bench-${randomBytes(4).toString('hex')}`
  const otherTenantId = `${tenantId}-other`
  writeFileSync(tenantsFile, JSON.stringify({
    tenants: [
      { id: tenantId, keys: [tenantKeyHash(tenantKey)], rateLimit: unlimited, readRateLimit: unlimited },
      { id: otherTenantId, keys: [tenantKeyHash(otherTenantKey)], rateLimit: unlimited, readRateLimit: unlimited }
    ]
  }))
  return {
    dir,
    tenantKey,
    tenantId,
    otherTenantKey,
    otherTenantId,
    upstreamKey,
    gatewaySecret,
    metricsToken,
    tenantsFile,
    gatewayEnv: (upstreamUrl, redisUrl) => ({
      NODE_ENV: 'production',
      LOG_LEVEL: 'info',
      EVOLINK_API_KEY: upstreamKey,
      EVOLINK_BASE_URL: upstreamUrl,
      TENANTS_FILE: tenantsFile,
      GATEWAY_SECRET: gatewaySecret,
      METRICS_TOKEN: metricsToken,
      REDIS_URL: redisUrl,
      UPSTREAM_CONNECTIONS: '128'
    }),
    remove: () => rmSync(dir, { recursive: true, force: true })
  }
}

async function call (url: string, init: RequestInit): Promise<{ status: number, body: Record<string, unknown> | null }> {
  const response = await fetch(url, { ...init, signal: AbortSignal.timeout(10_000) })
  const text = await response.text()
  try {
    return { status: response.status, body: JSON.parse(text) as Record<string, unknown> }
  } catch {
    return { status: response.status, body: null }
  }
}

function expect (what: string, answer: { status: number, body: Record<string, unknown> | null }, check: (body: Record<string, unknown>) => boolean): void {
  if (answer.status !== 200 || answer.body === null || !check(answer.body)) {
    throw new Error(`sanity check failed: ${what} answered ${answer.status} ${JSON.stringify(answer.body)}`)
  }
}

/**
 * One create and one poll on a side, checked by shape, before any load: a side
 * that answers fast but wrong must not make it to the table. Returns the id the
 * side gave on create (the gateway's is tenant-scoped).
 */
export async function sanityCheck (side: string, baseUrl: string, tenantKey: string): Promise<string> {
  const headers = { authorization: `Bearer ${tenantKey}` }
  const created = await call(`${baseUrl}/v1/videos/generations`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: createBody })
  expect(`${side} POST /v1/videos/generations`, created, (body) => typeof body.id === 'string' && body.id.startsWith(createdTask.id) && body.status === 'pending')
  const id = created.body?.id as string
  const polled = await call(`${baseUrl}/v1/tasks/${encodeURIComponent(id)}`, { headers })
  expect(`${side} GET /v1/tasks/{id}`, polled, (body) => body.id === id && body.status === completedTask.status && Array.isArray(body.results))
  return id
}

/** Database mode: the schema, then the bench tenant, as `npm run tenants -- import` does it. */
export async function seedBenchDatabase (databaseUrl: string, secrets: BenchSecrets): Promise<void> {
  const log = { info () {}, warn () {}, error () {} }
  await runMigrations({ databaseUrl, log })
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 1 })
  try {
    await importTenants(pool, { actor: 'cli:bench', requestId: null }, readTenantsFile(secrets.tenantsFile), newKeyId)
  } finally {
    await pool.end()
  }
}
