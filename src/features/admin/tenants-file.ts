import type pg from 'pg'
import type { TenantDefinition, TenantsFile } from '../../schemas/tenants.ts'
import { buildTenantRegistry } from '../tenants/registry.ts'
import { loadTenantSnapshot } from './store.ts'

export interface ExportedTenants {
  file: TenantsFile
  /** tenants a tenants file cannot carry as they are: disabled, or without a live key (`keys` needs one) */
  leftOut: Array<{ id: string, reason: 'disabled' | 'no live key' }>
}

/**
 * The database as a tenants file (file mode's TENANTS_FILE): every enabled tenant with the
 * hashes of its live keys (neither revoked nor expired at `now`). Key labels, prefixes,
 * expiries and the audit log have no place in a file and stay behind.
 */
export async function exportTenantsFile (pool: pg.Pool, now: Date): Promise<ExportedTenants> {
  const snapshot = await loadTenantSnapshot(pool)
  const leftOut: ExportedTenants['leftOut'] = []
  const tenants: TenantDefinition[] = []
  for (const row of snapshot.tenants) {
    if (row.disabled) {
      leftOut.push({ id: row.id, reason: 'disabled' })
      continue
    }
    const keys = snapshot.keys
      .filter((key) => key.tenantId === row.id && (key.expiresAt === null || key.expiresAt > now))
      .map((key) => key.keyHash)
    if (keys.length === 0) {
      leftOut.push({ id: row.id, reason: 'no live key' })
      continue
    }
    tenants.push({ id: row.id, keys, ...row.settings })
  }
  // What file mode would refuse is not written: the same checks as a start-up.
  buildTenantRegistry(tenants)
  return { file: { tenants }, leftOut }
}
