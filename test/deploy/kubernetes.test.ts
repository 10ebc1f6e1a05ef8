import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { parse, parseAllDocuments } from 'yaml'
import { Deployment } from 'kubernetes-models/apps/v1/Deployment'
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler'
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap'
import { Secret } from 'kubernetes-models/v1/Secret'
import { Service } from 'kubernetes-models/v1/Service'
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget'
import { describeConfig, resolveConfig } from '../../src/config.ts'
import { readTenantsFile } from '../../src/features/tenants/registry.ts'

// kubernetes-models: ajv validators compiled ahead of time from the Kubernetes
// OpenAPI schemas, shipped in the package: offline, no cluster, no download.
const models: Record<string, { validate: (object: Record<string, unknown>) => void }> = {
  'apps/v1 Deployment': { validate: (o) => new Deployment(o as never).validate() },
  'v1 Service': { validate: (o) => new Service(o as never).validate() },
  'policy/v1 PodDisruptionBudget': { validate: (o) => new PodDisruptionBudget(o as never).validate() },
  'autoscaling/v2 HorizontalPodAutoscaler': { validate: (o) => new HorizontalPodAutoscaler(o as never).validate() },
  'v1 ConfigMap': { validate: (o) => new ConfigMap(o as never).validate() },
  'v1 Secret': { validate: (o) => new Secret(o as never).validate() }
}

const directory = new URL('../../deploy/kubernetes/', import.meta.url)
type Manifest = Record<string, any>
const manifests: Array<{ file: string, object: Manifest }> = []
for (const file of readdirSync(directory).filter((name) => name.endsWith('.yaml')).sort()) {
  for (const document of parseAllDocuments(readFileSync(new URL(file, directory), 'utf8'))) {
    if (document.errors.length > 0) throw new Error(`${file}: ${document.errors[0]?.message ?? 'YAML error'}`)
    manifests.push({ file, object: document.toJS() as Manifest })
  }
}
function only (kind: string): Manifest {
  const found = manifests.filter((m) => m.object.kind === kind)
  if (found.length !== 1) throw new Error(`expected one ${kind}, found ${found.length}`)
  return (found[0] as { object: Manifest }).object
}

t.test('every manifest is valid against the Kubernetes JSON schema of its kind', (t) => {
  t.same(manifests.map((m) => m.object.kind).sort(), ['ConfigMap', 'Deployment', 'HorizontalPodAutoscaler', 'PodDisruptionBudget', 'Secret', 'Service'])
  for (const { file, object } of manifests) {
    const model = models[`${String(object.apiVersion)} ${String(object.kind)}`]
    if (model === undefined) { t.fail(`${file}: no schema for ${String(object.apiVersion)} ${String(object.kind)}`); continue }
    t.doesNotThrow(() => model.validate(object), `${file}: ${String(object.kind)} is valid`)
  }
  t.end()
})

t.test('the validator rejects what the API server would', (t) => {
  const deployment = structuredClone(only('Deployment'))
  deployment.spec.template.spec.terminationGracePeriodSeconds = '25s'
  t.throws(() => models['apps/v1 Deployment']?.validate(deployment), 'a string where an integer belongs')
  const service = structuredClone(only('Service'))
  delete service.spec.ports[0].port
  t.throws(() => models['v1 Service']?.validate(service), 'a port without its number')
  t.end()
})

t.test('shutdown timings agree with the config defaults', (t) => {
  const deployment = only('Deployment')
  const pod = deployment.spec.template.spec
  const container = pod.containers[0]
  const env = new Map<string, string>(container.env.filter((e: Manifest) => 'value' in e).map((e: Manifest) => [e.name, e.value]))
  const { shutdownGraceMs: graceMs, shutdownDrainMs: drainMs, shutdownJobGraceMs: jobGraceMs } = resolveConfig()
  t.equal(Number(env.get('SHUTDOWN_GRACE_MS')), graceMs, 'SHUTDOWN_GRACE_MS: the default')
  t.equal(Number(env.get('SHUTDOWN_DRAIN_MS')), drainMs, 'SHUTDOWN_DRAIN_MS: the default')
  t.equal(Number(env.get('SHUTDOWN_JOB_GRACE_MS')), jobGraceMs, 'SHUTDOWN_JOB_GRACE_MS: the default')
  t.ok(jobGraceMs <= graceMs, 'a job under way gets its grace within the close\'s')
  const preStopS = container.lifecycle.preStop.sleep.seconds
  t.ok(preStopS >= 5, 'preStop waits for the endpoint removal to propagate')
  const needS = preStopS + (drainMs + graceMs) / 1000
  const period = pod.terminationGracePeriodSeconds
  t.ok(period > needS, `terminationGracePeriodSeconds ${period} > preStop ${preStopS} s + drain + grace = ${needS} s`)
  t.ok(period <= needS + 10, 'and not so long that a stuck pod lingers')
  t.equal(container.readinessProbe.httpGet.path, '/readyz')
  t.equal(container.livenessProbe.httpGet.path, '/healthz')
  t.end()
})

t.test('the pod and docker-compose agree on the shutdown timings and the log buffer: the config defaults', (t) => {
  const pod = only('Deployment').spec.template.spec
  const env = new Map<string, string>(pod.containers[0].env.filter((e: Manifest) => 'value' in e).map((e: Manifest) => [e.name, e.value]))
  const composeFile = parse(readFileSync(new URL('../../docker-compose.yml', import.meta.url), 'utf8'), { merge: true }) as { 'x-gateway': { environment: Record<string, string>, stop_grace_period: string } }
  const gateway = composeFile['x-gateway']
  const defaults = new Map(describeConfig().map((c) => [c.env, c.schema.default]))
  for (const name of ['SHUTDOWN_DRAIN_MS', 'SHUTDOWN_GRACE_MS', 'SHUTDOWN_JOB_GRACE_MS', 'LOG_BUFFER_BYTES']) {
    t.equal(env.get(name), String(defaults.get(name)), `${name}: the Deployment sets the default`)
    // compose passes the operator's .env through, and an empty value is the default: the same value unless overridden.
    t.equal(gateway.environment[name], `\${${name}:-}`, `${name}: compose passes it through, the default when unset`)
  }
  const stopGraceS = Number(/^(\d+)s$/.exec(gateway.stop_grace_period)?.[1])
  const { shutdownDrainMs, shutdownGraceMs } = resolveConfig()
  t.ok(stopGraceS > (shutdownDrainMs + shutdownGraceMs) / 1000, `compose stop_grace_period ${stopGraceS} s > drain + grace`)
  t.ok(stopGraceS <= pod.terminationGracePeriodSeconds, 'and no longer than the pod\'s (which adds the preStop sleep)')
  t.end()
})

t.test('the pod runs locked down, with resources, on the ports config expects', (t) => {
  const deployment = only('Deployment')
  const pod = deployment.spec.template.spec
  const container = pod.containers[0]
  t.equal(pod.securityContext.runAsNonRoot, true)
  t.equal(pod.securityContext.runAsUser, 1000, "the image's node user")
  t.equal(container.securityContext.readOnlyRootFilesystem, true)
  t.equal(container.securityContext.allowPrivilegeEscalation, false)
  t.same(container.securityContext.capabilities.drop, ['ALL'])
  t.ok(container.resources.requests.cpu, 'a CPU request (the HPA scales on it)')
  t.ok(container.resources.requests.memory)
  t.ok(container.resources.limits.memory)
  const env = new Map<string, string>(container.env.map((e: Manifest) => [e.name, e.value ?? e.valueFrom?.secretKeyRef?.key]))
  const known = new Set(describeConfig().map((c) => c.env).concat(['NODE_ENV', 'SHUTDOWN_DRAIN_MS']))
  for (const name of env.keys()) t.ok(known.has(name), `${name} is a setting of src/config.ts`)
  const ports = new Map<string, number>(container.ports.map((p: Manifest) => [p.name, p.containerPort]))
  t.equal(Number(env.get('PORT')), ports.get('http'))
  t.equal(Number(env.get('METRICS_PORT')), ports.get('metrics'))
  t.equal(env.get('HOST'), '0.0.0.0')
  const selector = deployment.spec.selector.matchLabels
  t.same(only('Service').spec.selector, selector, 'the Service selects the pods')
  t.same(only('PodDisruptionBudget').spec.selector.matchLabels, selector, 'the PDB covers the pods')
  t.equal(only('HorizontalPodAutoscaler').spec.scaleTargetRef.name, deployment.metadata.name)
  t.ok(only('PodDisruptionBudget').spec.minAvailable < only('HorizontalPodAutoscaler').spec.minReplicas, 'a drain can always evict one pod')
  const secretKeys = Object.keys(only('Secret').stringData)
  for (const e of container.env.filter((e: Manifest) => e.valueFrom !== undefined)) {
    t.ok(secretKeys.includes(e.valueFrom.secretKeyRef.key), `${String(e.name)} comes from the Secret`)
  }
  t.end()
})

t.test('the ConfigMap holds a tenants file the gateway accepts, mounted where TENANTS_FILE points', (t) => {
  const configMap = only('ConfigMap')
  const pod = only('Deployment').spec.template.spec
  const container = pod.containers[0]
  const volume = pod.volumes.find((v: Manifest) => v.configMap?.name === configMap.metadata.name)
  const mount = container.volumeMounts.find((m: Manifest) => m.name === volume.name)
  const tenantsFile = container.env.find((e: Manifest) => e.name === 'TENANTS_FILE').value
  const fileName = Object.keys(configMap.data)[0] as string
  t.equal(tenantsFile, join(mount.mountPath, fileName))
  const scratch = mkdtempSync(join(tmpdir(), 'vg-k8s-'))
  t.teardown(() => rmSync(scratch, { recursive: true, force: true }))
  writeFileSync(join(scratch, fileName), configMap.data[fileName])
  const tenants = readTenantsFile(join(scratch, fileName))
  t.equal(tenants.length, 1)
  t.end()
})
