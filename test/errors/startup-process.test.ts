import { createServer } from 'node:net'
import t, { type Test } from 'tap'
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

/** One human line on stderr, the same message as the JSON fatal line (with its code, never a stack), exit 1. */
async function expectOneLine (t: Test, env: Record<string, string>, files: Record<string, string>, expected: { line: string, code?: string }): Promise<string> {
  const server = startServerProcess(t, { HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'info', ...env }, files)
  t.equal(await server.exited, 1, 'exit 1')
  const lines = server.output().split('\n')
  t.ok(lines.includes(expected.line), 'the human line', { output: server.output() })
  const fatal = lines.filter(line => line.startsWith('{')).map(line => JSON.parse(line) as Record<string, unknown>).filter(entry => entry.level === 60)
  t.same(fatal.map(({ msg, code, err }) => ({ msg, code, err })), [{ msg: expected.line, code: expected.code, err: undefined }], 'one JSON fatal line: the message, its code, no error object')
  t.notMatch(server.output(), /\n\s+at /, 'no stack trace')
  return server.output()
}

const secret = { GATEWAY_SECRET: 'startup-test-secret-0123456789-abcdefghij', EVOLINK_API_KEY: 'sk-startup-test' }

t.test('a tenants file that is not JSON: one line naming TENANTS_FILE and the place', async (t) => {
  await expectOneLine(t, { ...secret, TENANTS_FILE: 'tenants.json' }, { 'tenants.json': '{"tenants": [\n  {id: "acme"}\n]}' }, {
    line: 'TENANTS_FILE: tenants.json is not valid JSON (Expected property name or \'}\' in JSON at position 17 (line 2 column 4))'
  })
})

t.test('a tenants file the schema refuses: one line naming TENANTS_FILE and the field', async (t) => {
  await expectOneLine(t, { ...secret, TENANTS_FILE: 'tenants.json' }, { 'tenants.json': JSON.stringify({ tenants: [{ id: 'acme' }] }) }, {
    line: 'TENANTS_FILE: tenants.json: tenants[0] must have required properties keys'
  })
})

t.test('a tenants file that is not there: one line naming TENANTS_FILE', async (t) => {
  await expectOneLine(t, { ...secret, TENANTS_FILE: 'missing.json' }, {}, { line: 'TENANTS_FILE: cannot read missing.json (ENOENT)', code: 'ENOENT' })
})

t.test('an unreachable Redis: one line naming REDIS_URL, where it was looked for, never its password', async (t) => {
  const port = await freePort()
  const output = await expectOneLine(t, { REDIS_URL: `redis://gateway:hunter2-password@127.0.0.1:${port}` }, {}, {
    line: `REDIS_URL: cannot connect to Redis at 127.0.0.1:${port} (ECONNREFUSED): start it, or fix or empty REDIS_URL`,
    code: 'ECONNREFUSED'
  })
  t.notMatch(output, /hunter2/, 'the password is not shown')
})

t.test('a metrics port in use: the line names METRICS_PORT, not PORT', async (t) => {
  const port = await freePort()
  const blocker = createServer()
  await new Promise<void>((resolve) => blocker.listen(port, '127.0.0.1', resolve))
  t.teardown(() => { blocker.close() })
  await expectOneLine(t, { METRICS_PORT: String(port) }, {}, { line: `port ${port} is in use: set METRICS_PORT`, code: 'EADDRINUSE' })
})

t.test('a missing GATEWAY_SECRET with a real upstream key: one line naming it', async (t) => {
  await expectOneLine(t, { EVOLINK_API_KEY: 'sk-startup-test', TENANTS_FILE: 'tenants.json' }, { 'tenants.json': JSON.stringify({ tenants: [] }) }, {
    line: 'GATEWAY_SECRET is required with EVOLINK_API_KEY: it signs task ids, and every replica needs the same one (32+ characters, e.g. `openssl rand -base64 48`)'
  })
})
