import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { makeTenant, startTestGateway } from '../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../helpers/simulator.ts'

const root = join(import.meta.dirname, '..', '..')

// The example in docs/client.md, run as a user runs it: its own process, importing
// `video-gateway/client` through the package's exports (the condition that maps it to
// src/ instead of dist/, which tests do not build).
t.test('examples/create-and-wait.ts creates a task and waits for it', async (t) => {
  const upstream = await startTestSimulator(t, { taskDurationMs: 1000 })
  const tenant = makeTenant('example')
  const { url } = await startTestGateway(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [tenant] })
  const child = spawn(process.execPath, ['--conditions=video-gateway-source', join(root, 'examples', 'create-and-wait.ts')], {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', GATEWAY_URL: url, GATEWAY_KEY: tenant.key },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
  t.equal(code, 0, `the example exits 0 (${stderr})`)
  t.match(stdout, new RegExp(`^completed ${upstream.url.replaceAll('.', '\\.')}/files/task-unified-\\S+\\.mp4\\n$`))
})

t.test('docs/client.md shows the example as it is', async (t) => {
  const code = readFileSync(join(root, 'examples', 'create-and-wait.ts'), 'utf8').split('\n').filter((line) => !line.startsWith('// ')).join('\n').trim()
  const shown = /```ts\n([\s\S]*?)```/.exec(readFileSync(join(root, 'docs', 'client.md'), 'utf8'))?.[1]?.trim()
  t.equal(shown, code)
  t.ok(code.split('\n').length <= 14, 'about ten lines')
})
