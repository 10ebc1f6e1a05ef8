// docker-compose.yml as Debian's docker-compose reads it (CI has no Docker engine to run it):
// valid, and every setting of src/config.ts reaches both gateway services.
import t from 'tap'
import { execFile as execFileCallback } from 'node:child_process'
import { promisify } from 'node:util'
import { parse } from 'yaml'
import { describeConfig } from '../../src/config.ts'
import { deployTool } from '../helpers/deploy-tools.ts'

const execFile = promisify(execFileCallback)
const root = new URL('../../', import.meta.url).pathname
const compose = deployTool('docker-compose', ['version'])

interface ComposeService { environment?: Record<string, string | null> | string[] }

t.test('docker-compose config accepts the file, and both gateways get every setting', { skip: 'skip' in compose ? compose.skip : false }, async (t) => {
  if (!('command' in compose)) return
  const { stdout } = await execFile(compose.command, ['config'], { cwd: root })
  const services = (parse(stdout) as { services: Record<string, ComposeService> }).services
  const settings = describeConfig().map((setting) => setting.env)
  for (const name of ['gateway-1', 'gateway-2']) {
    const environment = services[name]?.environment ?? {}
    const given = new Set(Array.isArray(environment) ? environment.map((entry) => entry.split('=')[0]) : Object.keys(environment))
    t.same(settings.filter((setting) => !given.has(setting)), [], `${name}: every configuration variable`)
    t.equal(Array.isArray(environment) ? undefined : environment.HOST, '0.0.0.0', `${name}: HOST 0.0.0.0 (reachable from the proxy)`)
  }
})
