import t from 'tap'
import { request } from 'undici'
import { freePort, startServerProcess } from '../helpers/server-process.ts'

t.test('a typo in a setting is one warning at start, and the gateway still serves', async (t) => {
  const port = await freePort()
  const server = startServerProcess(t, { PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'info', LOG_LEVL: 'debug', REDIS_HOSTNAME: 'x' })
  await server.waitFor(/Demo tenant key: vgk_/)
  const warnings = server.output().split('\n').filter(line => line.includes('unknown setting'))
  t.equal(warnings.length, 2, 'one warning per unknown variable')
  t.match(warnings.join('\n'), /unknown setting LOG_LEVL: did you mean LOG_LEVEL\?/)
  t.match(warnings.join('\n'), /unknown setting REDIS_HOSTNAME: not a video-gateway variable/)
  t.equal((await request(`http://127.0.0.1:${port}/healthz`)).statusCode, 200)
  server.child.kill('SIGTERM')
  t.equal(await server.exited, 0)
})
