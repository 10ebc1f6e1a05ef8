import t from 'tap'
import type { CpuProfile } from '../../bench/cpuprofile-top.ts'
import { attribute } from '../../bench/profile-attribution.ts'

const frame = (id: number, functionName: string, url: string, children: number[] = []): CpuProfile['nodes'][number] & { children: number[] } =>
  ({ id, callFrame: { functionName, url, lineNumber: 0 }, children })

// root ─ reply.send (fastify) ─ end (node:_http_outgoing) ─ writeUtf8String (native)
//      ─ scope (dist/features/tasks/task-id.js) ─ hash (node:internal/crypto)
//      ─ (garbage collector), (idle), and a node-core frame with no caller of ours
const nodes = [
  frame(1, '(root)', '', [2, 5, 7, 8, 9]),
  frame(2, 'send', 'file:///app/node_modules/fastify/lib/reply.js', [3]),
  frame(3, 'end', 'node:_http_outgoing', [4]),
  frame(4, 'writeUtf8String', ''),
  frame(5, 'scope', 'file:///app/dist/features/tasks/task-id.js', [6]),
  frame(6, 'hash', 'node:internal/crypto/hash'),
  frame(7, '(garbage collector)', ''),
  frame(8, '(idle)', ''),
  frame(9, 'parserOnIncoming', 'node:_http_server')
]

/** One sample per 100 ms bucket: `busy` samples (cycling through `ids`), then `idle` idle ones. */
function profile (phases: Array<{ ids: number[], count: number }>): CpuProfile {
  const samples: number[] = []
  for (const phase of phases) for (let index = 0; index < phase.count; index++) samples.push(phase.ids[index % phase.ids.length] as number)
  return { nodes, startTime: 0, samples, timeDeltas: samples.map(() => 100_000) }
}

t.test('each sample is charged to the nearest frame that is neither node core nor native', async (t) => {
  const { byCategory, busyUs } = attribute(profile([{ ids: [4, 6, 7, 9, 4], count: 20 }, { ids: [8], count: 20 }]), 2)
  t.equal(busyUs, 20 * 100_000, 'idle samples are not busy time')
  t.same(Object.fromEntries(byCategory), {
    'fastify/lib/reply.js': 8 * 100_000,
    'src/features/tasks/task-id.ts': 4 * 100_000,
    '(garbage collector)': 4 * 100_000,
    'node: core (HTTP parser, event loop)': 4 * 100_000
  })
})

t.test('only the last load-seconds of the last long busy run count: not the start-up before a pause, not the idle drain after', async (t) => {
  const startUp = { ids: [5], count: 15 }
  const pause = { ids: [8], count: 15 }
  const load = { ids: [2], count: 30 }
  const drain = { ids: [8], count: 50 }
  const { byCategory, busyUs } = attribute(profile([startUp, pause, load, drain]), 2)
  t.equal(busyUs, 20 * 100_000, '2 s of the 3 s load')
  t.same(Object.fromEntries(byCategory), { 'fastify/lib/reply.js': 20 * 100_000 })
  t.throws(() => attribute(profile([{ ids: [2], count: 5 }, drain]), 2), /no run of 1 s under load/)
})
