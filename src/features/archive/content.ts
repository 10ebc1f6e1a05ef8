import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { parse as parseRange } from 'range-parser'
import { gatewayError } from '../../errors/table.ts'
import { matchesIfNoneMatch } from '../tasks/snapshot.ts'
import type { Tenant } from '../tenants/registry.ts'
import { DownloadFailure } from './download.ts'
import type { ArchiveRecord, ArchivedObject } from './records.ts'

/** The archived object, whole or one byte range, with its ETag (its SHA-256); 304 and 416 as RFC 9110 says. */
async function sendStored (fastify: FastifyInstance, request: FastifyRequest, reply: FastifyReply, record: ArchiveRecord, object: ArchivedObject): Promise<FastifyReply> {
  const etag = `"${object.sha256}"`
  reply.header('etag', etag).header('accept-ranges', 'bytes').header('cache-control', 'private, max-age=3600')
  const headers = request.headers as { range?: string, 'if-none-match'?: string }
  if (matchesIfNoneMatch(headers['if-none-match'], etag)) return await reply.code(304).send()
  const rangeHeader = headers.range
  const parsed = rangeHeader === undefined ? undefined : parseRange(object.size, rangeHeader)
  // Malformed, another unit, or several ranges: the whole video (RFC 9110 lets a server ignore Range).
  const usable = parsed !== undefined && parsed.type === 'bytes' && (parsed.code & 1) === 0
  if (usable && parsed.ranges.length === 0 && (parsed.code & 2) !== 0) {
    throw gatewayError('range_not_satisfiable', { args: [JSON.stringify(rangeHeader), object.size], headers: { 'content-range': `bytes */${object.size}` } })
  }
  const range = usable && parsed.ranges.length === 1 ? parsed.ranges[0]! : undefined
  const stored = await fastify.archive.open(record, object.index, range)
  // Erased (or swept) between the record's read and this one.
  if (stored === null) throw gatewayError('content_deleted', { args: ['just now'] })
  reply.type(object.contentType)
  if (range === undefined) return await reply.header('content-length', String(object.size)).send(stored.body)
  return await reply.code(206)
    .header('content-range', `bytes ${range.start}-${range.end}/${object.size}`)
    .header('content-length', String(range.end - range.start + 1))
    .send(stored.body)
}

/**
 * A task's video for a caller already authorised to read the task: from the
 * archive once archived, streamed from the upstream's link before that (so one
 * URL works from the first second), 409 while the task runs, 410 once erased.
 * Both dialects' content routes answer with this.
 */
export async function sendTaskContent (fastify: FastifyInstance, options: { request: FastifyRequest, reply: FastifyReply, tenant: Tenant, upstreamId: string, index: number }): Promise<FastifyReply> {
  const { request, reply, tenant, upstreamId, index } = options
  const record = await fastify.archive.recordOf(tenant.id, upstreamId)
  if (record?.status === 'erased' || record?.status === 'expired') {
    throw gatewayError('content_deleted', { args: [record.status === 'erased' ? 'on request' : 'at the end of their retention'] })
  }
  const archived = record?.status === 'archived' ? record.objects.find((object) => object.index === index) : undefined
  if (record !== null && archived !== undefined) return await sendStored(fastify, request, reply, record, archived)

  const snapshot = await fastify.taskStatus.read(upstreamId, request)
  await fastify.taskStatus.observe({ tenantId: tenant.id, upstreamTaskId: upstreamId, snapshot })
  if (snapshot.task.status !== 'completed') throw gatewayError('task_not_finished', { args: [String(snapshot.task.status)] })
  const url = snapshot.task.results?.[index]
  if (typeof url !== 'string') throw gatewayError('not_found', { args: [`This task has no video ${index}.`], param: 'index' })
  const closed = new AbortController()
  reply.raw.once('close', () => closed.abort())
  let answer
  try {
    answer = await fastify.archive.sources.open({ url, range: request.headers.range, signal: closed.signal })
  } catch (error) {
    if (error instanceof DownloadFailure) {
      request.log.warn({ reason: error.message }, 'content: the upstream link could not be streamed')
      throw gatewayError('upstream_unavailable', { cause: error })
    }
    throw error
  }
  for (const name of ['content-type', 'content-length', 'content-range', 'accept-ranges'] as const) {
    const value = answer.headers[name]
    if (typeof value === 'string') reply.header(name, value)
  }
  return await reply.code(answer.statusCode === 206 ? 206 : 200).header('cache-control', 'private, no-cache').send(answer.body)
}
