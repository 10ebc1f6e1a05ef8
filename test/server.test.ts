import t from 'tap'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { request } from 'undici'
import { freePort, startServerProcess } from './helpers/server-process.ts'

t.test('with no EVOLINK_API_KEY: the simulator, a printed demo key, a working gateway, a graceful stop', async (t) => {
  const port = await freePort()
  const server = startServerProcess(t, { PORT: String(port), HOST: '127.0.0.1', SIMULATOR_TASK_DURATION_MS: '200', LOG_LEVEL: 'info' })
  const [, key] = await server.waitFor(/Demo tenant key: (vgk_\S+)/) as [string, string]
  t.match(server.output(), /SIMULATOR MODE, no real videos are made/)

  const base = `http://127.0.0.1:${port}`
  const created = await request(`${base}/v1/videos/generations`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'veo-3.1-fast-generate-preview', prompt: 'A cat playing piano' })
  })
  t.equal(created.statusCode, 200)
  const { id } = await created.body.json() as { id: string }
  await sleep(300)
  const task = await request(`${base}/v1/tasks/${id}`, { headers: { authorization: `Bearer ${key}` } })
  t.equal(task.statusCode, 200)
  t.equal((await task.body.json() as { status: string }).status, 'completed')
  t.equal((await request(`${base}/healthz`)).statusCode, 200)

  server.child.kill('SIGTERM')
  t.equal(await server.exited, 0, 'exits 0 on SIGTERM')
  t.match(server.output(), /shutting down/)
  t.notMatch(server.output(), /sk-evo-sim-/, 'the simulator key is in no log line')
})

t.test('PORT=0: the printed address names the port the server got', async (t) => {
  const server = startServerProcess(t, { PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'warn' })
  const [, key] = await server.waitFor(/Demo tenant key: (vgk_\S+)/) as [string, string]
  const [, base] = await server.waitFor(/Demo page: (http:\/\/127\.0\.0\.1:\d+)\/demo/) as [string, string]
  t.notMatch(base, /:0$/, `not port 0 (${base})`)
  const task = await request(`${base}/v1/tasks/task-unified-1-none.AAAAAAAAAAAAAAAAAAAAAA`, { headers: { authorization: `Bearer ${key}` } })
  t.equal(task.statusCode, 404, 'the gateway answers there, with the printed key')
  await task.body.dump()
  server.child.kill('SIGTERM')
  t.equal(await server.exited, 0)
})

t.test('with a real key, a missing TENANTS_FILE stops start-up with a clear message', async (t) => {
  const server = startServerProcess(t, { PORT: String(await freePort()), EVOLINK_API_KEY: 'sk-evo-real-key-that-must-not-leak' })
  t.equal(await server.exited, 1)
  t.match(server.output(), /TENANTS_FILE is required with EVOLINK_API_KEY/)
  t.notMatch(server.output(), /sk-evo-real-key-that-must-not-leak/)
})

t.test('with a real key and tenants, a missing GATEWAY_SECRET stops start-up', async (t) => {
  const dir = t.testdir({ 'tenants.json': JSON.stringify({ tenants: [] }) })
  const server = startServerProcess(t, { PORT: String(await freePort()), EVOLINK_API_KEY: 'sk-evo-x', TENANTS_FILE: `${dir}/tenants.json` })
  t.equal(await server.exited, 1)
  t.match(server.output(), /GATEWAY_SECRET is required with EVOLINK_API_KEY/)
})

t.test('a bad variable stops start-up naming it', async (t) => {
  const server = startServerProcess(t, { PORT: '99999' })
  t.equal(await server.exited, 1)
  t.match(server.output(), /Invalid configuration: PORT must be <= 65535, got 99999/)
})

t.test('an ARCHIVE_DIR that cannot be made stops start-up with one line naming it (no hang, no stack)', async (t) => {
  // Not t.testdir: startServerProcess makes the test's testdir afresh for each process.
  const dir = await mkdtemp(join(tmpdir(), 'vg-archive-dir-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  await writeFile(join(dir, 'a-file'), 'x')
  // /proc: mkdir answers ENOENT under a parent that exists, where Node's recursive mkdir loops for ever.
  for (const [archiveDir, reason] of [
    ['/proc/nope', "ENOENT: no such file or directory, mkdir '/proc/nope'"],
    [`${dir}/a-file/archive`, `ENOTDIR: not a directory, mkdir '${dir}/a-file/archive'`],
    [`${dir}/a-file`, `${dir}/a-file exists and is not a directory`]
  ] as const) {
    const server = startServerProcess(t, { PORT: String(await freePort()), HOST: '127.0.0.1', LOG_LEVEL: 'warn', ARCHIVE_DIR: archiveDir })
    t.equal(await server.exited, 1, archiveDir)
    const line = `ARCHIVE_DIR: the archive storage cannot be opened (${reason})`
    t.ok(server.output().split('\n').includes(line), `the line for ${archiveDir}`)
    t.notMatch(server.output(), /\n\s+at /, 'no stack trace')
  }
})

t.test('METRICS_PORT: /metrics on a listener of its own, closed on SIGTERM', async (t) => {
  const port = await freePort()
  const metricsPort = await freePort()
  const server = startServerProcess(t, { PORT: String(port), HOST: '127.0.0.1', METRICS_PORT: String(metricsPort), LOG_LEVEL: 'info' })
  const [, key] = await server.waitFor(/Demo tenant key: (vgk_\S+)/) as [string, string]
  t.match(server.output(), /Prometheus metrics served on their own port/)
  const created = await request(`http://127.0.0.1:${port}/v1/videos/generations`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'veo-3.1-fast-generate-preview', prompt: 'A cat playing piano' })
  })
  t.equal(created.statusCode, 200)
  await created.body.dump()
  const scraped = await request(`http://127.0.0.1:${metricsPort}/metrics`)
  t.equal(scraped.statusCode, 200)
  t.match(await scraped.body.text(), /^vg_http_requests_total\{route="\/v1\/videos\/generations",method="POST",status="200",tenant="[^"]+"\} 1$/m)
  t.equal((await request(`http://127.0.0.1:${port}/metrics`)).statusCode, 404, 'not on the main port without METRICS_TOKEN')
  server.child.kill('SIGTERM')
  t.equal(await server.exited, 0)
})
