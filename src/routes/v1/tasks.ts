import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { gatewayError } from '../../errors/table.ts'
import { TaskHeaders, TaskParams, TaskQuery } from '../../schemas/generation.ts'
import { errorResponses } from '../../schemas/errors.ts'
import { VideoGenerationTask } from '../../schemas/generated/evolink.ts'
import { matchesIfNoneMatch, type TaskSnapshot } from '../../features/tasks/snapshot.ts'
import { waitForProgress } from '../../features/tasks/wait.ts'
import { tenantOf } from '../../features/tenants/auth.ts'
import { tenantRateLimit } from '../../features/tenants/rate-limit.ts'
import type { Tenant } from '../../features/tenants/registry.ts'
import type { ArchiveRecord } from '../../features/archive/records.ts'
import { Type } from 'typebox'
import { hash } from 'node:crypto'

/** The task read's answer: the upstream's task, and what the archive adds to it. */
export const TaskAnswer = Type.Object({
  ...VideoGenerationTask.properties,
  upstream_results: Type.Optional(Type.Array(Type.String(), { description: 'Once archived with `rewriteResults`: the upstream\'s own links (valid 24 h), while `results` lists signed gateway links that outlive them.' })),
  archive: Type.Optional(Type.Object({
    status: Type.Enum(['pending', 'archived', 'failed', 'erased', 'expired'], { description: 'pending: being downloaded (retries included); archived; failed (gave up, `error` says why); erased (on request); expired (retention ended).' }),
    error: Type.Optional(Type.String({ description: 'Why the last attempt, or the archive, failed.' })),
    retain_until: Type.Optional(Type.Integer({ description: 'Unix seconds: when the archived videos are deleted (absent: kept until erased).' }))
  }, { description: 'The gateway\'s archive of this task\'s videos, when it archives them.' }))
}, { additionalProperties: true })

/** The task as this tenant sees it: the upstream's body with the tenant-scoped id. */
export function presentTask (snapshot: TaskSnapshot, scopedId: string): VideoGenerationTask {
  return { ...snapshot.task, id: scopedId }
}

/**
 * The task read with its archive: status, and once archived (and the tenant
 * wants it) signed gateway links in `results`, the upstream's in
 * `upstream_results`. The ETag covers the archive's state and the links'
 * expiry (rounded to the hour), so a 304 never keeps a client on dead links.
 */
function presentWithArchive (options: { fastify: FastifyInstance, request: FastifyRequest, tenant: Tenant, snapshot: TaskSnapshot, scopedId: string, record: ArchiveRecord }): { body: VideoGenerationTask, etag: string } {
  const { fastify, tenant, snapshot, scopedId, record } = options
  const body: VideoGenerationTask & Record<string, unknown> = presentTask(snapshot, scopedId)
  body.archive = {
    status: record.status,
    ...(record.lastError === null || record.status === 'archived' ? {} : { error: record.lastError }),
    ...(record.status === 'archived' && record.retainUntil !== null ? { retain_until: Math.floor(record.retainUntil / 1000) } : {})
  }
  let variant: string = record.status
  if (record.status === 'archived' && fastify.archive.settingsOf(tenant).rewriteResults && Array.isArray(snapshot.task.results)) {
    // The origin this client reached the gateway at (X-Forwarded-* with TRUST_PROXY): reachable by it by definition.
    const base = `${options.request.protocol}://${options.request.host}/v1/tasks/${encodeURIComponent(scopedId)}/content`
    let expires = 0
    body.upstream_results = snapshot.task.results
    body.results = snapshot.task.results.map((_, index) => {
      const signed = fastify.archive.signLink({ tenantId: tenant.id, taskId: scopedId, index })
      expires = signed.expires
      return `${base}?${signed.query}`
    })
    variant = `${record.status}-${expires}`
  }
  return { body, etag: `"${hash('sha256', snapshot.etag + variant, 'base64url').slice(0, 27)}"` }
}

/**
 * The upstream id behind a tenant-scoped id, for this tenant only: another
 * tenant's id, a forged one or an unknown one is 404, before any upstream call.
 */
export function upstreamIdOf (fastify: FastifyInstance, request: FastifyRequest, scopedId: string): string {
  const upstreamId = fastify.taskIds.unscope(tenantOf(request).id, scopedId)
  if (upstreamId === null) throw gatewayError('not_found', { args: ['Task not found.'], param: 'task_id' })
  return upstreamId
}

/**
 * The serialised answer of the last read of each snapshot (the key: the upstream's task
 * object, which a cached snapshot keeps across reads), for the tenant-scoped id it was
 * made for. Polls of a finished task re-send the same bytes: serialising them again
 * was most of the handler's own time. Weak: it goes with the snapshot.
 */
const serialised = new WeakMap<object, { scopedId: string, json: string }>()

/** Fastify's own content type for a serialised JSON answer. */
const jsonContentType = 'application/json; charset=utf-8'

const tasksRoute: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get('/tasks/:task_id', {
    config: { ...tenantRateLimit('read'), tokenOperation: 'read' },
    schema: {
      tags: ['Tasks'],
      summary: 'Get a task\'s status and results',
      description: 'The task as the upstream reports it (status, progress, results with video URLs valid 24 h, error, usage; unknown fields pass through), for the tenant that created it. Another tenant\'s id, a forged id and an unknown id all answer 404. ' +
        'Reads are coalesced and cached: concurrent reads of one task share one upstream call, a running task\'s status is reused for TASK_STATUS_TTL_MS, a finished one for TASK_TERMINAL_TTL_MS. ' +
        'Answers carry an ETag (`If-None-Match` gets 304). `?wait=N` long-polls: the answer comes when the status or progress changes, or after N seconds with the current state.',
      operationId: 'getTask',
      security: [{ tenantKey: [] }],
      params: TaskParams,
      querystring: TaskQuery,
      headers: TaskHeaders,
      response: {
        200: TaskAnswer,
        304: { type: 'null', description: 'Not modified: the ETag in If-None-Match is still current.' },
        ...errorResponses([400, 401, 404, 429, 500, 502, 503, 504])
      }
    }
  }, async function getTask (request, reply) {
    const upstreamId = upstreamIdOf(fastify, request, request.params.task_id)
    const first = await fastify.taskStatus.read(upstreamId, request)
    const waitMs = request.query.wait === undefined ? 0 : Number(request.query.wait) * 1000
    // (No wait to do, the common case: no promise to await.)
    const snapshot = first.terminal || waitMs === 0 ? first : await waitForProgress({ taskStatus: fastify.taskStatus, upstreamId, first, waitMs, reply })
    // A finished task frees its tenant's concurrency slot and is counted (once, however often it is read).
    const tenant = tenantOf(request)
    await fastify.taskStatus.observe({ tenantId: tenant.id, upstreamTaskId: upstreamId, snapshot })
    const record = snapshot.terminal && fastify.archive.configured ? await fastify.archive.recordOf(tenant.id, upstreamId) : null
    const scopedId = request.params.task_id
    if (record === null) {
      // Without an archive record the answer is the snapshot's task under the scoped id, its ETag the snapshot's.
      reply.header('etag', snapshot.etag).header('cache-control', fastify.taskStatus.cacheControl(snapshot))
      if (matchesIfNoneMatch(request.headers['if-none-match'], snapshot.etag)) return await reply.code(304).send(null)
      let answer = serialised.get(snapshot.task)
      if (answer === undefined || answer.scopedId !== scopedId) {
        // (The route's serialiser for a 200, the one Fastify would use: it returns a string.)
        answer = { scopedId, json: reply.serialize(presentTask(snapshot, scopedId)) as string }
        serialised.set(snapshot.task, answer)
      }
      // A string with a JSON type is sent as it is (the plain reply type: the route's is typed for the object).
      return await (reply as FastifyReply).header('content-type', jsonContentType).send(answer.json)
    }
    const { body, etag } = presentWithArchive({ fastify, request, tenant, snapshot, scopedId, record })
    reply.header('etag', etag).header('cache-control', 'private, no-cache')
    if (matchesIfNoneMatch(request.headers['if-none-match'], etag)) return await reply.code(304).send(null)
    return body
  })
}

export default tasksRoute
