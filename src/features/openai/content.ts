import type { FastifyReply } from 'fastify'
import { request } from 'undici'
import { gatewayError } from '../../errors/table.ts'
import type { TaskSnapshot } from '../tasks/snapshot.ts'

/** Headers of the upstream's file answer that the caller gets as they are. */
const passedHeaders = ['content-type', 'content-length', 'etag', 'last-modified'] as const

/**
 * The bytes of a finished task's first result, streamed from the upstream's
 * result link through the gateway (the link itself is never shown).
 * Until the archive is merged: then `/content` serves the archived file
 * (Range, ETag, 304) and this function goes.
 */
export async function streamFirstResult (snapshot: TaskSnapshot, reply: FastifyReply): Promise<FastifyReply> {
  const url = snapshot.task.results?.[0]
  if (url === undefined) throw gatewayError('not_found', { args: ['The video has no content.'], param: 'video_id' })
  let answer
  try {
    // The link comes from the upstream's own answer, not from a caller: no SSRF guard, no redirects.
    answer = await request(url, { method: 'GET', headersTimeout: 30_000, bodyTimeout: 60_000 })
  } catch (cause) {
    throw gatewayError('upstream_unavailable', { cause })
  }
  if (answer.statusCode !== 200) {
    await answer.body.dump()
    throw gatewayError('upstream_unavailable', { cause: new Error(`result download answered ${answer.statusCode}`) })
  }
  for (const name of passedHeaders) {
    const value = answer.headers[name]
    if (typeof value === 'string') reply.header(name, value)
  }
  return await reply.code(200).send(answer.body)
}
