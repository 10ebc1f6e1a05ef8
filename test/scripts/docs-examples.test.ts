import t from 'tap'
import { spawnSync } from 'node:child_process'
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort, startServerProcess } from '../helpers/server-process.ts'

const root = fileURLToPath(new URL('../../', import.meta.url))
const files = ['README.md', ...readdirSync(join(root, 'docs')).filter((name) => name.endsWith('.md')).sort().map((name) => `docs/${name}`)]

/** The ```sh blocks right after a `<!-- run -->` line, in file order (README first, then docs/ alphabetically). */
function runnableBlocks (): Array<{ file: string, script: string }> {
  return files.flatMap((file) => [...readFileSync(join(root, file), 'utf8').matchAll(/^<!-- run -->\n```sh\n([\s\S]*?)^```$/gm)]
    .map((match) => ({ file, script: match[1] ?? '' })))
}

// Every curl of the examples records its status and body; the examples' own output stays as the user sees it.
const preamble = `set -euo pipefail
curl () {
  local body; body=$(mktemp -p "$CALLS_DIR")
  local status; status=$(command curl -sS -o "$body" -w '%{http_code}' "$@")
  printf '%s %s\\n' "$status" "$body" >> "$CALLS_DIR/calls"
  cat "$body"
}
`

t.test('the shell examples marked <!-- run --> work against a gateway on the simulator', async (t) => {
  const blocks = runnableBlocks()
  t.ok(blocks.length >= 3, 'README.md and docs/ have runnable examples')
  const port = await freePort()
  const gateway = startServerProcess(t, { PORT: String(port), SIMULATOR_TASK_DURATION_MS: '1500' })
  const [, key = ''] = await gateway.waitFor(/Demo tenant key: (vgk_\S+)/)
  const dir = t.testdir({ calls: '' })

  for (const { file, script } of blocks) {
    const before = readFileSync(join(dir, 'calls'), 'utf8').split('\n').filter(Boolean).length
    const runnable = script.replaceAll('http://127.0.0.1:8080', `http://127.0.0.1:${port}`).replaceAll('KEY=vgk_...', `KEY=${key}`)
    writeFileSync(join(dir, 'example.sh'), preamble + runnable)
    const run = spawnSync('bash', [join(dir, 'example.sh')], {
      cwd: dir, encoding: 'utf8', timeout: 60_000, env: { PATH: process.env.PATH ?? '', KEY: key, CALLS_DIR: dir }
    })
    t.equal(run.status, 0, `${file}: the block ran (${run.stderr})`)
    const calls = readFileSync(join(dir, 'calls'), 'utf8').split('\n').filter(Boolean).slice(before)
    t.ok(calls.length > 0, `${file}: the block made requests`)
    for (const call of calls) {
      const [status = '', bodyPath = ''] = call.split(' ')
      const body = readFileSync(bodyPath, 'utf8')
      t.match(status, /^2\d\d$/, `${file}: a 2xx answer (got ${status}: ${body.slice(0, 200)})`)
      if (body.startsWith('{')) t.doesNotThrow(() => JSON.parse(body), `${file}: a JSON answer`)
      else t.match(body, /event: task[\s\S]*event: end/, `${file}: an event stream that ends`)
    }
  }
})
