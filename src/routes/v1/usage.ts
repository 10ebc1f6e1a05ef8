import { Readable } from 'node:stream'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type, type Static } from 'typebox'
import { gatewayError, storeUnavailable } from '../../errors/table.ts'
import { errorResponses } from '../../schemas/errors.ts'
import { fromMilli } from '../../features/usage/charge.ts'
import { daysBetween, msPerDay, parseUtcDay, utcDay } from '../../features/usage/windows.ts'
import type { UsageDay } from '../../features/usage/store/memory.ts'
import { endUserPattern } from '../../schemas/tokens.ts'
import { tenantOf } from '../../features/tenants/auth.ts'
import { tenantRateLimit } from '../../features/tenants/rate-limit.ts'
import { csvLine, ledgerCsvHeader, ledgerCsvLine } from '../../features/usage/csv.ts'
import type { LedgerRow } from '../../features/usage/ledger.ts'

/** Longest report: a year, leap day included. */
export const maxUsageDays = 366
/** Without `from`: this many days, ending with `to`. */
const defaultUsageDays = 30

const dayPattern = '^\\d{4}-\\d{2}-\\d{2}$'

export const UsageQuery = Type.Object({
  from: Type.Optional(Type.String({ pattern: dayPattern, examples: ['2026-01-01'], description: 'First UTC day (YYYY-MM-DD), inclusive. Default: 29 days before `to`.' })),
  to: Type.Optional(Type.String({ pattern: dayPattern, examples: ['2026-01-31'], description: `Last UTC day (YYYY-MM-DD), inclusive. Default: today. At most ${maxUsageDays} days from \`from\`.` })),
  end_user: Type.Optional(Type.String({ pattern: endUserPattern, description: 'Only this end user\'s part: the requests and creates made with browser tokens minted for that `end_user`, and the ends of those tasks.' })),
  format: Type.Optional(Type.Enum(['json', 'csv'], { description: 'json (default): the days and their sums. csv (database mode only, DATABASE_URL): the usage ledger\'s rows, one per task created in the period (by the UTC day its create was admitted), oldest first, as `text/csv` with a header row: ' + ledgerCsvHeader.map((name) => `\`${name}\``).join(', ') + '.' }))
}, { additionalProperties: false })

const usageCounters = {
  requests: Type.Integer({ description: 'Requests to /v1 made with this tenant\'s keys (any answer, rejections included).' }),
  tasks_created: Type.Integer({ description: 'Tasks the upstream created for this tenant.' }),
  tasks_completed: Type.Integer({ description: 'Tasks the gateway saw completed that day.' }),
  tasks_failed: Type.Integer({ description: 'Tasks the gateway saw failed (or cancelled) that day.' }),
  video_seconds: Type.Integer({ description: 'Seconds of video ordered: duration × n of each create.' }),
  credits: Type.Number({ description: 'Upstream credits charged for creates of that day: `usage.credits_reserved`, corrected by the task\'s final usage when it reports one.' }),
  archived_videos: Type.Integer({ description: 'Videos the archive stored that day (ARCHIVE_DIR or ARCHIVE_S3_BUCKET; 0 when archiving is off).' }),
  archived_bytes: Type.Integer({ description: 'Bytes the archive stored that day.' })
}

const UsageReport = Type.Object({
  object: Type.Literal('usage'),
  tenant: Type.String({ description: 'The calling tenant\'s id.' }),
  end_user: Type.Optional(Type.String({ description: 'The end user the report is limited to, when one was asked for.' })),
  from: Type.String(),
  to: Type.String(),
  data: Type.Array(Type.Object({ date: Type.String({ description: 'UTC day, YYYY-MM-DD.' }), ...usageCounters }, { additionalProperties: false }), { description: 'One entry per day of the range, oldest first, zeros included.' }),
  total: Type.Object(usageCounters, { additionalProperties: false, description: 'The sums over the range.' })
}, { additionalProperties: false })

type UsageCounters = Omit<Static<typeof UsageReport>['total'], never>

function present (day: UsageDay): UsageCounters {
  return {
    requests: day.requests,
    tasks_created: day.tasksCreated,
    tasks_completed: day.tasksCompleted,
    tasks_failed: day.tasksFailed,
    video_seconds: day.videoSeconds,
    credits: fromMilli(day.creditsMilli),
    archived_videos: day.archivedVideos,
    archived_bytes: day.archivedBytes
  }
}

function dayOf (value: string, param: 'from' | 'to'): number {
  const ms = parseUtcDay(value)
  if (ms === null) throw gatewayError('invalid_request', { args: [`"${param}" is not a calendar day: ${value}.`], param })
  return ms
}

const usageRoute: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get('/usage', {
    config: tenantRateLimit('read'),
    schema: {
      tags: ['Usage'],
      summary: 'The calling tenant\'s usage per UTC day',
      description: `Requests, tasks created, completed and failed, video-seconds and credits, per UTC day from \`from\` to \`to\` (inclusive, at most ${maxUsageDays} days; default the last ${defaultUsageDays}). Only the calling tenant's own usage, ever. Counters are kept 400 days. With \`end_user\`, the part of that end user (browser tokens minted with that \`end_user\`): which of the tenant's users spent what. In database mode (DATABASE_URL) tasks, video-seconds and credits come from the durable usage ledger (one row per task), and \`format=csv\` answers its rows for the period as \`text/csv\`.`,
      operationId: 'getUsage',
      security: [{ tenantKey: [] }],
      querystring: UsageQuery,
      response: {
        200: {
          description: 'The report (`format=json`), or the ledger\'s rows (`format=csv`).',
          content: {
            'application/json': { schema: UsageReport },
            'text/csv': { schema: { type: 'string', description: 'RFC 4180: CRLF line ends, a header row, fields quoted when they hold a quote, a comma or a line break; empty for a value not (yet) known; credits with three decimals; times ISO 8601 UTC.' } }
          }
        },
        ...errorResponses([400, 401, 429, 500, 503])
      }
    }
  }, async function getUsage (request, reply) {
    const tenant = tenantOf(request)
    const toMs = request.query.to === undefined ? dayOf(utcDay(fastify.tenantUsage.now()), 'to') : dayOf(request.query.to, 'to')
    const fromMs = request.query.from === undefined ? toMs - (defaultUsageDays - 1) * msPerDay : dayOf(request.query.from, 'from')
    if (fromMs > toMs) throw gatewayError('invalid_request', { args: ['"from" is after "to".'], param: 'from' })
    if ((toMs - fromMs) / msPerDay + 1 > maxUsageDays) {
      throw gatewayError('invalid_request', { args: [`The range may span at most ${maxUsageDays} days.`], param: 'from' })
    }
    const endUser = request.query.end_user ?? null
    if (request.query.format === 'csv') {
      const ledger = fastify.usageLedger
      if (ledger === null) throw gatewayError('invalid_request', { args: ['"format=csv" lists the usage ledger\'s rows, which exist in database mode only (DATABASE_URL); this gateway keeps counters only (format=json).'], param: 'format' })
      // The first page before the answer starts: a database that fails is a 503 in the error format, not a cut stream.
      const pages = ledger.rows({ tenantId: tenant.id, fromMs, toMs, endUser })
      let first: IteratorResult<LedgerRow[]>
      try {
        await ledger.flush()
        first = await pages.next()
      } catch (error) {
        throw storeUnavailable(error)
      }
      async function * lines (): AsyncGenerator<string> {
        yield csvLine(ledgerCsvHeader)
        if (first.done === true) return
        for (const row of first.value) yield ledgerCsvLine(row)
        for await (const page of pages) for (const row of page) yield ledgerCsvLine(row)
      }
      const name = `usage-${tenant.id}-${utcDay(fromMs)}-${utcDay(toMs)}.csv`
      return await reply
        .header('cache-control', 'private, no-store')
        .header('content-disposition', `attachment; filename="${name}"`)
        .type('text/csv; charset=utf-8')
        // (A stream skips the response serializer: the schema of text/csv documents, the JSON one validates.)
        .send(Readable.from(lines()) as never)
    }
    const days = await fastify.tenantUsage.report({ tenantId: tenant.id, days: daysBetween(fromMs, toMs), endUser })
    const data = days.map((day) => ({ date: day.date, ...present(day) }))
    const total = present(days.reduce<UsageDay>((sum, day) => ({
      date: '',
      requests: sum.requests + day.requests,
      tasksCreated: sum.tasksCreated + day.tasksCreated,
      tasksCompleted: sum.tasksCompleted + day.tasksCompleted,
      tasksFailed: sum.tasksFailed + day.tasksFailed,
      videoSeconds: sum.videoSeconds + day.videoSeconds,
      creditsMilli: sum.creditsMilli + day.creditsMilli,
      archivedVideos: sum.archivedVideos + day.archivedVideos,
      archivedBytes: sum.archivedBytes + day.archivedBytes
    }), { date: '', requests: 0, tasksCreated: 0, tasksCompleted: 0, tasksFailed: 0, videoSeconds: 0, creditsMilli: 0, archivedVideos: 0, archivedBytes: 0 }))
    reply.header('cache-control', 'private, no-store')
    return { object: 'usage' as const, tenant: tenant.id, ...(endUser === null ? {} : { end_user: endUser }), from: utcDay(fromMs), to: utcDay(toMs), data, total }
  })
}

export default usageRoute
