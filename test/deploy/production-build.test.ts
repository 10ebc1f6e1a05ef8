// The production image's steps, outside Docker (CI has no Docker engine): production-only
// node_modules, `npm run build`, then `node dist/server.js` in a clean environment with
// NODE_ENV=production in simulator mode, probed as the container would be: the Dockerfile's
// own HEALTHCHECK command, a create with the demo key it prints, the demo page from dist/assets,
// and a SIGTERM that must end in exit status 0.
import t from 'tap'
import { execFile as execFileCallback, spawn } from 'node:child_process'
import { cpSync, readFileSync } from 'node:fs'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { request } from 'undici'
import { freePort } from '../helpers/server-process.ts'
import { captureForLeakScan } from '../helpers/leak-capture.ts'

const execFile = promisify(execFileCallback)
const root = new URL('../../', import.meta.url).pathname
// npm ci and tsc take a while on a loaded machine: more than tap's default per file.
t.setTimeout(360_000)

/** The exec-form array of the Dockerfile's `HEALTHCHECK ... CMD [...]`. */
function dockerfileHealthcheck (): string[] {
  const text = readFileSync(`${root}Dockerfile`, 'utf8').replace(/\\\r?\n/g, ' ')
  const line = text.split('\n').find((candidate) => /^\s*HEALTHCHECK\b/.test(candidate))
  const command = line?.match(/\bCMD\s+(\[.*\])\s*$/)
  if (command === null || command === undefined) throw new Error('Dockerfile: no exec-form HEALTHCHECK CMD [...]')
  return JSON.parse(command[1] ?? '[]') as string[]
}

t.test('the production build serves in simulator mode and stops cleanly on SIGTERM', async (t) => {
  const work = t.testdir({})
  cpSync(`${root}package.json`, `${work}/package.json`)
  cpSync(`${root}package-lock.json`, `${work}/package-lock.json`)
  await execFile('npm', ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund'], { cwd: work, env: { ...process.env, npm_config_update_notifier: 'false' } })
  // `npm run build`'s two steps, into the image's directory rather than the checkout's dist/.
  await execFile('npx', ['tsc', '-p', 'tsconfig.build.json', '--outDir', `${work}/dist`], { cwd: root })
  cpSync(`${root}src/assets`, `${work}/dist/assets`, { recursive: true })

  const port = await freePort()
  const base = `http://127.0.0.1:${port}`
  // A clean environment, as in the container: nothing from the test run leaks in.
  const child = spawn(process.execPath, ['dist/server.js'], {
    cwd: work,
    env: { PATH: process.env.PATH ?? '', HOME: work, NODE_ENV: 'production', HOST: '127.0.0.1', PORT: String(port), LOG_LEVEL: 'info', SHUTDOWN_GRACE_MS: '5000', SHUTDOWN_DRAIN_MS: '0', SIMULATOR_TASK_DURATION_MS: '200', ARCHIVE_DIR: join(work, 'archive'), ARCHIVE_POLL_INTERVAL_MS: '50' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => { resolve(code) }))
  t.teardown(() => {
    captureForLeakScan('process-output', output)
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })

  let demoKey: string | undefined
  for (let attempt = 0; attempt < 400 && demoKey === undefined; attempt++) {
    if (child.exitCode !== null) break
    demoKey = /Demo tenant key: *(\S+)/.exec(output)?.[1]
    if (demoKey === undefined) await new Promise((resolve) => setTimeout(resolve, 50))
  }
  t.ok(demoKey, demoKey === undefined ? `no demo key printed; output:\n${output.slice(0, 2000)}` : 'the demo key is printed')

  const health = await request(`${base}/healthz`)
  t.equal(health.statusCode, 200)
  t.match(await health.body.json(), { status: 'ok' })

  const [command, ...args] = dockerfileHealthcheck()
  t.equal(command, 'node', 'the HEALTHCHECK runs node (the image has no curl)')
  const probe = await execFile(process.execPath, args, { cwd: work, env: { PATH: process.env.PATH ?? '', PORT: String(port) } }).then(() => 0, (error: { code?: number }) => error.code ?? 1)
  t.equal(probe, 0, "the Dockerfile's HEALTHCHECK command passes against a healthy server")

  const created = await request(`${base}/v1/videos/generations`, {
    method: 'POST',
    headers: { authorization: `Bearer ${demoKey ?? ''}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'veo-3.1-fast-generate-preview', prompt: 'production smoke test' })
  })
  const task = await created.body.json() as { id?: string, status?: string }
  t.equal(created.statusCode, 200, 'a create with the printed demo key')
  t.match(task, { id: String, status: 'pending' })

  // The archive's download thread is dist/features/archive/download-worker.js (resolved from the built module).
  let archive: { status?: string, error?: string } | undefined
  for (let attempt = 0; attempt < 200 && archive?.status !== 'archived' && archive?.status !== 'failed'; attempt++) {
    await new Promise((resolve) => setTimeout(resolve, 50))
    const read = await request(`${base}/v1/tasks/${task.id ?? ''}`, { headers: { authorization: `Bearer ${demoKey ?? ''}` } })
    archive = (await read.body.json() as { archive?: { status?: string, error?: string } }).archive
  }
  t.match(archive, { status: 'archived', retain_until: Number }, 'archived by the built download thread')
  t.equal((await readdir(join(work, 'archive'), { recursive: true })).filter((name) => name.endsWith('.mp4')).length, 1, 'the video is on disk')

  // The demo page and its token come from dist/assets (copied by the build), not from src/.
  const page = await request(`${base}/demo`)
  t.equal(page.statusCode, 200)
  t.match(await page.body.text(), '<title>video-gateway demo</title>')
  const script = await request(`${base}/demo/demo.js`)
  t.equal(script.statusCode, 200)
  await script.body.dump()
  const token = await request(`${base}/demo/token`, { method: 'POST' })
  t.equal(token.statusCode, 200)
  await token.body.dump()

  child.kill('SIGTERM')
  t.equal(await exited, 0, 'exit status 0 after SIGTERM')
  t.match(output, /shut down cleanly/)
})
