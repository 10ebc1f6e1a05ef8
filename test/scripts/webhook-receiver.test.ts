import t from 'tap'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import { freePort, startServerProcess } from '../helpers/server-process.ts'

const receiverPath = fileURLToPath(new URL('../../scripts/webhook-receiver.ts', import.meta.url))

t.test('npm run webhook-receiver prints a real signed webhook from a gateway on the simulator, verified', async (t) => {
  const gatewayPort = await freePort()
  const gateway = startServerProcess(t, { PORT: String(gatewayPort), SIMULATOR_TASK_DURATION_MS: '300' })
  const [, key] = await gateway.waitFor(/Demo tenant key: (vgk_\S+)/)
  const [, secret] = await gateway.waitFor(/webhook secret[^:]*: (whsec_\S+)/)

  const receiverPort = await freePort()
  const receiver = spawn(process.execPath, [receiverPath], {
    env: { PATH: process.env.PATH ?? '', WEBHOOK_SECRET: secret ?? '', WEBHOOK_RECEIVER_PORT: String(receiverPort) },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let output = ''
  receiver.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
  receiver.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
  t.teardown(() => { receiver.kill('SIGKILL') })
  const waitFor = async (pattern: RegExp): Promise<void> => {
    for (const deadline = Date.now() + 30_000; Date.now() < deadline; await sleep(50)) if (pattern.test(output)) return
    throw new Error(`no ${pattern} in the receiver's output:\n${output}`)
  }
  await waitFor(/listening/)

  const created = await fetch(`http://127.0.0.1:${gatewayPort}/v1/videos/generations`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key ?? ''}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'veo-3.1-fast-generate-preview', prompt: 'A cat playing piano', callback_url: `http://127.0.0.1:${receiverPort}/hooks/video` })
  })
  t.equal(created.status, 200)
  const task = await created.json() as { id: string }

  await waitFor(/"verified":true/)
  const line = output.split('\n').find((entry) => entry.includes('"verified":true')) ?? ''
  const printed = JSON.parse(line) as { webhookId: string, event: { type: string, data: { id: string, status: string } } }
  t.match(printed.webhookId, /^msg_/)
  t.equal(printed.event.type, 'video.generation.task.completed')
  t.same({ id: printed.event.data.id, status: printed.event.data.status }, { id: task.id, status: 'completed' })
})

t.test('a delivery with a bad signature is refused with 401 and not printed as verified', async (t) => {
  const receiverPort = await freePort()
  const receiver = spawn(process.execPath, [receiverPath], {
    env: { PATH: process.env.PATH ?? '', WEBHOOK_SECRET: `whsec_${Buffer.alloc(32, 7).toString('base64')}`, WEBHOOK_RECEIVER_PORT: String(receiverPort) },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let output = ''
  receiver.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
  receiver.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
  t.teardown(() => { receiver.kill('SIGKILL') })
  for (const deadline = Date.now() + 15_000; !output.includes('listening') && Date.now() < deadline;) await sleep(50)
  const response = await fetch(`http://127.0.0.1:${receiverPort}/`, {
    method: 'POST',
    headers: { 'webhook-id': 'msg_1', 'webhook-timestamp': String(Math.floor(Date.now() / 1000)), 'webhook-signature': 'v1,AAAA' },
    body: '{}'
  })
  t.equal(response.status, 401)
  t.notMatch(output, /"verified":true/)
})
