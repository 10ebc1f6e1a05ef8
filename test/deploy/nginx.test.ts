import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { resolveConfig } from '../../src/config.ts'
import { TaskQuery } from '../../src/schemas/generation.ts'
import { deployTool } from '../helpers/deploy-tools.ts'

const conf = readFileSync(new URL('../../deploy/nginx.conf', import.meta.url), 'utf8')

/** The directives of one `location` block of deploy/nginx.conf, by its exact header. */
function location (header: string): Map<string, string> {
  const start = conf.indexOf(`location ${header} {`)
  if (start < 0) throw new Error(`deploy/nginx.conf has no "location ${header}"`)
  const body = conf.slice(conf.indexOf('{', start) + 1, conf.indexOf('}', start))
  const directives = new Map<string, string>()
  for (const raw of body.split('\n')) {
    const line = raw.replace(/#.*/, '').trim()
    const match = line.match(/^(\S+)\s+(.*);$/)
    if (match !== null) directives.set(match[1] as string, match[2] as string)
  }
  return directives
}
function seconds (value: string | undefined): number {
  const match = value?.match(/^(\d+)s$/)
  if (match == null) throw new Error(`not a duration in seconds: ${String(value)}`)
  return Number(match[1])
}

// The longest ?wait= the gateway accepts, from the schema's own pattern (…|60)$.
const longestWaitS = Math.max(...[...((TaskQuery.properties.wait as { pattern?: string }).pattern ?? '').matchAll(/\|(\d+)\)/g)].map((m) => Number(m[1])))

const nginx = deployTool('nginx', ['-v'])
t.test('nginx -t accepts deploy/nginx.conf (as nginx:alpine includes it, gateway hosts on loopback)', { skip: 'skip' in nginx ? nginx.skip : false }, (t) => {
  if (!('command' in nginx)) return
  const prefix = mkdtempSync(join(tmpdir(), 'vg-nginx-'))
  t.teardown(() => rmSync(prefix, { recursive: true, force: true }))
  // The compose service names do not resolve here: same file, loopback addresses.
  writeFileSync(join(prefix, 'gateway.conf'), conf.replace(/server gateway-(\d+):8080/g, 'server 127.0.0.$1:8080'))
  writeFileSync(join(prefix, 'nginx.conf'), [
    `pid ${join(prefix, 'nginx.pid')};`, 'error_log stderr;', 'events {}',
    'http {', '  access_log off;', `  client_body_temp_path ${prefix};`, `  proxy_temp_path ${prefix};`,
    `  include ${join(prefix, 'gateway.conf')};`, '}', ''
  ].join('\n'))
  const run = spawnSync(nginx.command, ['-t', '-p', prefix, '-c', join(prefix, 'nginx.conf')], { encoding: 'utf8' })
  t.equal(run.status, 0, `nginx -t: ${run.stderr}`)
  t.match(run.stderr, /syntax is ok/)
  t.match(run.stderr, /test is successful/)
  t.end()
})

t.test('nginx waits longer than the longest long-poll and SSE silence', (t) => {
  t.equal(longestWaitS, 60, 'the schema allows ?wait= up to 60 s')
  const general = location('/')
  const tasks = location('/v1/tasks/')
  const events = location('~ ^/v1/tasks/[^/]+/events$')
  const config = resolveConfig()
  t.ok(seconds(general.get('proxy_read_timeout')) * 1000 > config.upstreamTimeoutMs, 'longer than UPSTREAM_TIMEOUT_MS: the gateway answers its own 504')
  t.ok(seconds(tasks.get('proxy_read_timeout')) > longestWaitS, `/v1/tasks/: proxy_read_timeout ${String(tasks.get('proxy_read_timeout'))} > ${longestWaitS} s`)
  t.ok(seconds(events.get('proxy_read_timeout')) * 1000 > config.taskEventsHeartbeatMs, '/events: longer than TASK_EVENTS_HEARTBEAT_MS')
  t.ok(seconds(events.get('proxy_read_timeout')) > longestWaitS)
  t.equal(events.get('proxy_buffering'), 'off', '/events is not buffered')
  for (const [name, block] of [['/', general], ['/v1/tasks/', tasks], ['events', events]] as const) {
    t.equal(block.get('proxy_pass'), 'http://video_gateway', `${name}: proxied to the replicas`)
    t.equal(block.get('proxy_next_upstream'), 'error timeout', `${name}: a POST is never re-sent`)
  }
  t.end()
})
