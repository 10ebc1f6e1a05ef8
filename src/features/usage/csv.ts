import type { LedgerRow } from './ledger.ts'

/**
 * The usage ledger's rows as CSV (RFC 4180): a header row, CRLF line ends, and a
 * field quoted (its quotes doubled) when it holds a quote, a comma, CR or LF.
 * Empty for a missing value; credits as PostgreSQL prints numeric(16,3).
 */
export const ledgerCsvHeader = ['task_id', 'upstream_task_id', 'tenant', 'end_user', 'model', 'video_seconds', 'credits_estimated', 'credits_settled', 'status', 'created_at', 'finished_at'] as const

export function csvField (value: string | number | null): string {
  if (value === null) return ''
  const text = String(value)
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text
}

export function csvLine (values: ReadonlyArray<string | number | null>): string {
  return values.map(csvField).join(',') + '\r\n'
}

export function ledgerCsvLine (row: LedgerRow): string {
  return csvLine([row.taskId, row.upstreamTaskId, row.tenantId, row.endUser, row.model, row.videoSeconds, row.creditsEstimated, row.creditsSettled, row.status, row.createdAt, row.finishedAt])
}
