import type { ServerResponse } from 'node:http'
import { Readable } from 'node:stream'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { defaultBodyFor, invalidRequest } from './errors.ts'
import { faultKind, type Fault } from './faults.ts'
import { paddedSampleVideo, sampleVideo } from './media.ts'
import type { SimulatorRoute } from './types.ts'

/** The start of a plausible task body, cut short by the socket faults. */
const PARTIAL_BODY = '{"created":1757169743,"id":"task-unified-1757169743-'

/**
 * Responses left open on purpose (hang, bodyNeverEnds) and pending delays.
 * release() destroys the one and cuts the other short, so that app.close()
 * finishes; it is called from a preClose hook.
 */
export class OpenResponses {
  readonly #responses = new Set<ServerResponse>()
  readonly #sleeps = new Set<() => void>()
  #released = false

  get size (): number {
    return this.#responses.size
  }

  hold (response: ServerResponse): void {
    if (this.#released) {
      response.destroy()
      return
    }
    this.#responses.add(response)
    response.once('close', () => this.#responses.delete(response))
  }

  sleep (ms: number): Promise<void> {
    if (this.#released) return Promise.resolve()
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer)
        this.#sleeps.delete(done)
        resolve()
      }
      const timer = setTimeout(done, ms)
      this.#sleeps.add(done)
    })
  }

  release (): void {
    this.#released = true
    for (const done of [...this.#sleeps]) done()
    for (const response of [...this.#responses]) response.destroy()
    this.#responses.clear()
  }
}

function bodyOfSize (bytes: number): Readable {
  // {"pad":"xxx…"} for 10 bytes and more, "xx…" or 0 below that.
  let head = '{"pad":"'
  let tail = '"}'
  if (bytes < 10) {
    head = bytes >= 2 ? '"' : ''
    tail = bytes >= 2 ? '"' : (bytes === 1 ? '0' : '')
  }
  let padding = bytes - head.length - tail.length
  const chunk = 'x'.repeat(64 * 1024)
  return Readable.from((function * () {
    yield head
    while (padding > 0) {
      const size = Math.min(padding, chunk.length)
      padding -= size
      yield size === chunk.length ? chunk : chunk.slice(0, size)
    }
    yield tail
  })(), { objectMode: false })
}

/** The sample video, a chunk at a time; cut short (destroyed) if the app closes meanwhile. */
async function dribble (res: ServerResponse, open: OpenResponses, options: { intervalMs: number, chunkBytes: number }): Promise<void> {
  res.writeHead(200, { 'content-type': 'video/mp4', 'content-length': String(sampleVideo.length) })
  open.hold(res)
  for (let offset = 0; offset < sampleVideo.length; offset += options.chunkBytes) {
    if (res.destroyed) return
    res.write(sampleVideo.subarray(offset, offset + options.chunkBytes))
    await open.sleep(options.intervalMs)
  }
  if (!res.destroyed) res.end()
}

/**
 * Acts out one fault. Returns 'continue' when the call should then be answered
 * normally (delayMs), 'done' when the fault took over the response.
 */
export async function actOutFault (
  fault: Fault,
  route: SimulatorRoute,
  request: FastifyRequest,
  reply: FastifyReply,
  open: OpenResponses
): Promise<'continue' | 'done'> {
  const kind = faultKind(fault)
  const res = reply.raw
  if ('delayMs' in fault) {
    await open.sleep(fault.delayMs)
    return 'continue'
  }
  if ('status' in fault) {
    reply.code(fault.status).type('application/json; charset=utf-8')
    if (fault.headers !== undefined) reply.headers(fault.headers)
    const body = 'body' in fault ? fault.body : defaultBodyFor(fault.status, route)
    reply.send(JSON.stringify(body))
    return 'done'
  }
  if ('garbage' in fault) {
    reply.code(200).header('content-type', fault.contentType ?? 'application/json').send(Buffer.from(fault.garbage))
    return 'done'
  }
  if ('bodyBytes' in fault) {
    reply.code(200)
      .type('application/json')
      .header('content-length', String(fault.bodyBytes))
      .send(bodyOfSize(fault.bodyBytes))
    return 'done'
  }
  if ('redirect' in fault) {
    reply.code(302).header('location', fault.redirect).send()
    return 'done'
  }
  if ('videoBytes' in fault) {
    const video = paddedSampleVideo(fault.videoBytes)
    reply.code(200).type('video/mp4').header('content-length', String(video.size)).send(video.body())
    return 'done'
  }
  if ('echoAuthorization' in fault) {
    const received = request.headers.authorization ?? '(none)'
    reply.code(400).type('application/json; charset=utf-8')
      .send(JSON.stringify(invalidRequest(`Malformed Authorization header: ${received}`)))
    return 'done'
  }

  // The rest bypass Fastify's reply.
  reply.hijack()
  switch (kind) {
    case 'reset':
      if ('reset' in fault && fault.reset === 'after-headers') {
        res.writeHead(200, {
          'content-type': 'application/json; charset=utf-8',
          'content-length': String(PARTIAL_BODY.length * 4)
        })
        // Let headers and the partial body reach the socket, then cut it.
        res.write(PARTIAL_BODY, () => res.destroy())
      } else {
        res.destroy()
      }
      break
    case 'truncatedVideo':
      res.writeHead(200, { 'content-type': 'video/mp4', 'content-length': String(sampleVideo.length) })
      res.write(sampleVideo.subarray(0, sampleVideo.length >> 1), () => res.destroy())
      break
    case 'slowVideo':
      // Not awaited: the fault has taken the response over; the chunks follow on their own.
      if ('slowVideo' in fault) dribble(res, open, { intervalMs: fault.slowVideo, chunkBytes: fault.chunkBytes ?? 1024 }).catch(() => res.destroy())
      break
    case 'bodyNeverEnds':
      res.writeHead(200, { 'content-type': 'application/json; charset=utf-8' })
      res.write(PARTIAL_BODY)
      open.hold(res)
      break
    default: // hang
      open.hold(res)
  }
  return 'done'
}
