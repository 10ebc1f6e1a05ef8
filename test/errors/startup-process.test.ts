import { createServer } from 'node:net'
import t from 'tap'
import { freePort, startServerProcess } from '../helpers/server-process.ts'

t.test('a port in use: one human line naming PORT, the JSON fatal line, no stack, exit 1', async (t) => {
  const port = await freePort()
  const blocker = createServer()
  await new Promise<void>((resolve) => blocker.listen(port, '127.0.0.1', resolve))
  t.teardown(() => { blocker.close() })
  const server = startServerProcess(t, { PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'info' })
  t.equal(await server.exited, 1)
  const lines = server.output().split('\n')
  t.ok(lines.includes(`port ${port} is in use: set PORT`), 'the human line')
  const fatal = lines.filter(line => line.startsWith('{')).map(line => JSON.parse(line) as { level: number, msg: string, code?: string }).find(entry => entry.level === 60)
  t.same(fatal === undefined ? null : { msg: fatal.msg, code: fatal.code }, { msg: `port ${port} is in use: set PORT`, code: 'EADDRINUSE' })
  t.notMatch(server.output(), /\n\s+at /, 'no stack trace')
})
