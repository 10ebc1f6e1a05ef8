import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { parse } from 'yaml'
import { buildTestApp, makeTenant, validBody } from '../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../helpers/simulator.ts'
import { deployTool } from '../helpers/deploy-tools.ts'

const rulesPath = fileURLToPath(new URL('../../deploy/prometheus/alerts.yml', import.meta.url))
const dashboardPath = fileURLToPath(new URL('../../deploy/grafana/video-gateway.json', import.meta.url))
const metricsToken = 'metrics-token-0123456789abcdef'

interface Rule { alert: string, expr: string }
const rules = (parse(readFileSync(rulesPath, 'utf8')) as { groups: Array<{ rules: Rule[] }> }).groups.flatMap((g) => g.rules)
interface Panel { title: string, targets: Array<{ expr: string }> }
const dashboard = JSON.parse(readFileSync(dashboardPath, 'utf8')) as { panels: Panel[], templating: { list: Array<{ query: unknown }> } }

/** Every expression with where it comes from. */
const expressions: Array<{ where: string, expr: string }> = [
  ...rules.map((rule) => ({ where: `alert ${rule.alert}`, expr: rule.expr })),
  ...dashboard.panels.flatMap((panel) => panel.targets.map((target) => ({ where: `panel "${panel.title}"`, expr: target.expr }))),
  ...dashboard.templating.list.filter((v) => typeof v.query === 'string' && v.query.includes('vg_')).map((v) => ({ where: 'dashboard variable', expr: v.query as string }))
]

/** Metric families of a Prometheus text scrape: name → type, and the label names seen on their samples. */
function families (text: string): Map<string, { type: string, labels: Set<string> }> {
  const found = new Map<string, { type: string, labels: Set<string> }>()
  for (const line of text.split('\n')) {
    const type = line.match(/^# TYPE (\S+) (\S+)$/)
    if (type !== null) found.set(type[1] as string, { type: type[2] as string, labels: new Set() })
  }
  for (const line of text.split('\n')) {
    const sample = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? /)
    if (sample === null) continue
    const name = sample[1] as string
    const family = found.get(name) ?? found.get(name.replace(/_(bucket|sum|count)$/, ''))
    for (const label of (sample[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="/g)) family?.labels.add(label[1] as string)
  }
  return found
}

t.test('every metric and label the alert rules and the dashboard use exists in a real /metrics scrape', async (t) => {
  const upstream = await startTestSimulator(t, { taskDurationMs: 100_000 })
  const acme = makeTenant('acme', { rateLimit: { max: 1, timeWindow: 60_000 } })
  const app = await buildTestApp(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [acme], config: { metricsToken } })
  // Traffic, so that the labelled series have samples: a create, a read, a rejection.
  const created = await app.inject({ method: 'POST', url: '/v1/videos/generations', headers: { authorization: acme.authorization }, payload: validBody })
  t.equal(created.statusCode, 200)
  t.equal((await app.inject({ method: 'GET', url: `/v1/tasks/${created.json().id as string}`, headers: { authorization: acme.authorization } })).statusCode, 200)
  t.equal((await app.inject({ method: 'POST', url: '/v1/videos/generations', headers: { authorization: acme.authorization }, payload: validBody })).statusCode, 429)
  const scrape = await app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${metricsToken}` } })
  t.equal(scrape.statusCode, 200)
  const scraped = families(scrape.body)
  // Series without samples yet (no refund, no upstream error in this run) show
  // no labels in the text: their declared label names come from the registry.
  for (const [name, family] of scraped) {
    const declared = (app.metrics.registry.getSingleMetric(name) as { labelNames?: string[] } | undefined)?.labelNames ?? []
    for (const label of declared) family.labels.add(label)
  }
  t.ok(scraped.size > 10, 'the scrape has metric families')

  t.ok(expressions.length >= rules.length + dashboard.panels.length, 'every rule and panel has an expression')
  const used = new Set<string>()
  for (const { where, expr } of expressions) {
    const names = [...expr.matchAll(/\b(vg_[a-z0-9_]+)/g)].map((m) => m[1] as string)
    t.ok(names.length > 0, `${where}: names a gateway metric`)
    for (const name of names) {
      const base = scraped.has(name) ? name : name.replace(/_(bucket|sum|count)$/, '')
      const family = scraped.get(base)
      used.add(base)
      if (family === undefined) { t.fail(`${where}: ${name} is not in the scrape`); continue }
      t.pass(`${where}: ${name} exists (${family.type})`)
      if (base !== name) t.equal(family.type, 'histogram', `${where}: ${name} is a histogram series`)
      // Label matchers right after the name: {label="…", label=~"…"}.
      const matchers = expr.slice(expr.indexOf(name) + name.length).match(/^\{([^}]*)\}/)?.[1] ?? ''
      for (const label of matchers.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)/g)) {
        if (label[1] === 'instance' || label[1] === 'job') continue // added by Prometheus at scrape time
        t.ok(family.labels.has(label[1] as string), `${where}: ${name} has the label ${label[1] as string}`)
      }
    }
    // Grouping labels: by (a, b) must be labels of the metrics the expression reads.
    for (const group of expr.matchAll(/\bby \(([^)]*)\)/g)) {
      for (const label of (group[1] as string).split(',').map((l) => l.trim())) {
        if (label === 'le' || label === 'instance' || label === 'job') continue
        t.ok(names.some((name) => scraped.get(name.replace(/_(bucket|sum|count)$/, ''))?.labels.has(label) === true), `${where}: grouped by ${label}, a label of its metric`)
      }
    }
  }
  for (const name of ['vg_http_requests_total', 'vg_upstream_errors_total', 'vg_tenant_rejections_total', 'vg_upstream_request_duration_seconds', 'vg_redis_up', 'vg_upstream_circuit_breaker_state', 'vg_credits_charged_total']) {
    t.ok(used.has(name), `the dashboard or the rules show ${name}`)
  }
})

t.test('the scrape check catches a metric that does not exist', (t) => {
  const text = '# TYPE vg_http_requests_total counter\nvg_http_requests_total{status="200"} 1\n'
  t.equal(families(text).has('vg_http_request_total'), false)
  t.same([...(families(text).get('vg_http_requests_total')?.labels ?? [])], ['status'])
  t.end()
})

const promtool = deployTool('promtool')
t.test('promtool check rules deploy/prometheus/alerts.yml', { skip: 'skip' in promtool ? promtool.skip : false }, (t) => {
  if (!('command' in promtool)) return
  const run = spawnSync(promtool.command, ['check', 'rules', rulesPath], { encoding: 'utf8' })
  t.equal(run.status, 0, `promtool: ${run.stdout}${run.stderr}`)
  t.match(run.stdout, new RegExp(`SUCCESS: ${rules.length} rules found`))
  t.end()
})
