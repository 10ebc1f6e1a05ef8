import { createBody, openaiCreateBody } from './fixtures.ts'
import type { LoadSpec } from './load.ts'

/** What each scenario sends to each side. Both sides get the same headers and body. */
export type Side = 'baseline' | 'gateway'
export type ScenarioName = 'create' | 'create-redis' | 'poll' | 'fixed-rate' | 'openai-create'

export interface Scenario {
  name: ScenarioName
  what: string
  /** which gateway instance serves it */
  store: 'memory' | 'redis'
  connections: number
  overallRate?: number
  request (side: Side): Pick<LoadSpec, 'method' | 'headers' | 'body'> & { path: string }
}

export interface ScenarioContext {
  tenantKey: string
  /** the id the gateway returned on create (tenant-scoped) */
  scopedTaskId: string
  /** the upstream's own id, which the gateway polls upstream */
  upstreamTaskId: string
  connections: number
  fixedRate: { rate: number, connections: number }
}

export function scenarios (context: ScenarioContext): Scenario[] {
  const headers = { authorization: `Bearer ${context.tenantKey}` }
  const create = (): ReturnType<Scenario['request']> => ({
    method: 'POST',
    path: '/v1/videos/generations',
    headers: { ...headers, 'content-type': 'application/json' },
    body: createBody
  })
  return [
    { name: 'create', what: 'POST /v1/videos/generations, rate limits in memory', store: 'memory', connections: context.connections, request: create },
    {
      name: 'openai-create',
      what: 'POST /v1/videos (the OpenAI dialect: the same create, mapped); the baseline sends the native create it maps to',
      store: 'memory',
      connections: context.connections,
      request: (side) => side === 'gateway'
        ? { method: 'POST', path: '/v1/videos', headers: { ...headers, 'content-type': 'application/json' }, body: openaiCreateBody }
        : create()
    },
    { name: 'create-redis', what: 'the same, rate-limit counters in Redis', store: 'redis', connections: context.connections, request: create },
    {
      name: 'poll',
      what: 'GET /v1/tasks/{id} of a task created through the gateway',
      store: 'memory',
      connections: context.connections,
      request: (side) => ({
        method: 'GET',
        // The baseline asks the upstream for the same task the gateway asks it for.
        path: `/v1/tasks/${encodeURIComponent(side === 'gateway' ? context.scopedTaskId : context.upstreamTaskId)}`,
        headers
      })
    },
    {
      name: 'fixed-rate',
      what: `create at a fixed ${context.fixedRate.rate} req/s, for the latency added below saturation`,
      store: 'memory',
      connections: context.fixedRate.connections,
      overallRate: context.fixedRate.rate,
      request: create
    }
  ]
}
