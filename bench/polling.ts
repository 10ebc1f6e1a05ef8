import { setTimeout as sleep } from 'node:timers/promises'
import { Agent, fetch as undiciFetch } from 'undici'
import { createTaskIdCodec } from '../src/features/tasks/task-id.ts'
import { runLoad, type LoadResult } from './load.ts'

/**
 * Polling figures: what many clients watching one running task cost the
 * upstream. The fixed upstream answers `processing` for ids starting with
 * `task-unified-running-` until told to finish them, and counts their reads.
 */
export interface PollingRecord {
  storm: { clients: number, ratePerClient: number, durationS: number, run: LoadResult, upstreamReads: number, upstreamReadsPerS: number }
  events: { subscribers: number, heldS: number, receivedEnd: number, upstreamReads: number, upstreamReadsPerS: number }
}

export interface PollingOptions {
  gatewayUrl: string
  upstreamUrl: string
  tenantKey: string
  tenantId: string
  gatewaySecret: string
  smoke: boolean
}

/**
 * Upstream reads per second of a task polled for `durationS`: the first read fills the
 * empty cache at the start, each later one is a refresh (at most one per TASK_STATUS_TTL_MS),
 * so a 10 s storm at a 1 s TTL makes up to 11 reads and 1 refresh per second.
 */
function refreshesPerS (reads: number, durationS: number): number {
  return Math.max(0, reads - 1) / durationS
}

async function upstreamReads (upstreamUrl: string, upstreamId: string): Promise<number> {
  const answer = await fetch(`${upstreamUrl}/_control/reads?id=${upstreamId}`)
  return ((await answer.json()) as { reads: number }).reads
}

export async function runPollingFigures (options: PollingOptions): Promise<PollingRecord> {
  const ids = createTaskIdCodec({ secrets: [options.gatewaySecret] })
  const authorization = `Bearer ${options.tenantKey}`
  const run = Date.now().toString(36)

  // 1. Many clients polling one task at a fixed rate each.
  const clients = options.smoke ? 50 : 1000
  const ratePerClient = 10
  const durationS = options.smoke ? 1 : 10
  const stormId = `task-unified-running-poll-${run}`
  const storm = await runLoad({
    url: `${options.gatewayUrl}/v1/tasks/${ids.scope(options.tenantId, stormId)}`,
    method: 'GET',
    headers: { authorization },
    connections: clients,
    durationS,
    overallRate: clients * ratePerClient
  })
  const stormReads = await upstreamReads(options.upstreamUrl, stormId)

  // 2. Server-sent-event subscribers on one task; the task finishes after heldS.
  const subscribers = options.smoke ? 20 : 200
  const heldS = options.smoke ? 1 : 5
  const eventsId = `task-unified-running-sse-${run}`
  const url = `${options.gatewayUrl}/v1/tasks/${ids.scope(options.tenantId, eventsId)}/events`
  const dispatcher = new Agent({ connections: subscribers + 10 })
  let opened = 0
  let allOpen = (): void => {}
  const everyoneSubscribed = new Promise<void>((resolve) => { allOpen = resolve })
  const streams = Array.from({ length: subscribers }, async () => {
    const response = await undiciFetch(url, { headers: { authorization }, dispatcher, signal: AbortSignal.timeout(heldS * 1000 + 30_000) })
    if (++opened === subscribers) allOpen()
    const text = await response.text()
    return /\nevent: end\n/.test(`\n${text}`)
  })
  await everyoneSubscribed
  const readsAtOpen = await upstreamReads(options.upstreamUrl, eventsId)
  await sleep(heldS * 1000)
  const heldReads = await upstreamReads(options.upstreamUrl, eventsId) - readsAtOpen
  await fetch(`${options.upstreamUrl}/_control/finish?id=${eventsId}`, { method: 'POST' })
  const ends = await Promise.all(streams.map(async (stream) => await stream.catch(() => false)))
  await dispatcher.close()
  return {
    storm: { clients, ratePerClient, durationS, run: storm, upstreamReads: stormReads, upstreamReadsPerS: Math.round(refreshesPerS(stormReads, durationS) * 100) / 100 },
    events: { subscribers, heldS, receivedEnd: ends.filter(Boolean).length, upstreamReads: heldReads, upstreamReadsPerS: Math.round(heldReads / heldS * 100) / 100 }
  }
}

export function pollingLines (record: PollingRecord): string[] {
  const { storm, events } = record
  return [
    `- ${storm.clients} clients polling one running task ${storm.ratePerClient}×/s each for ${storm.durationS} s: ${storm.run.rps} req/s answered (asked: ${storm.clients * storm.ratePerClient}), p50 ${storm.run.p50} ms, p99 ${storm.run.p99} ms, errors ${storm.run.errors + storm.run.non2xx}; upstream reads ${storm.upstreamReads} in all, **${storm.upstreamReadsPerS} per second** after the first (target ≤ 1)`,
    `- ${events.subscribers} SSE subscribers on one running task for ${events.heldS} s: **${events.upstreamReadsPerS} upstream reads per second** while they waited; ${events.receivedEnd}/${events.subscribers} received the final \`end\` event when it finished`
  ]
}
