import t from 'tap'
import { rename, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { request } from 'undici'
import { makeTenant, testGatewaySecret } from './helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from './helpers/simulator.ts'
import { assertErrorResponse } from './helpers/assert-error.ts'
import { freePort, startServerProcess, type ServerProcess } from './helpers/server-process.ts'

// SIGHUP reloads the tenants file in the running process (issue 16 §1). The file is reached through a
// directory symlink that is swapped, as a Kubernetes ConfigMap volume does it: the file watcher (which
// watches the old directory) sees nothing, so only the signal can make the new tenants take effect.

async function usage (base: string, authorization: string): Promise<{ statusCode: number, headers: Record<string, unknown>, body: string }> {
  const response = await request(`${base}/v1/usage`, { headers: { authorization } })
  return { statusCode: response.statusCode, headers: response.headers as Record<string, unknown>, body: await response.body.text() }
}

const unauthorized = { status: 401, code: 'unauthorized', type: 'authentication_error', message: 'Missing or invalid API key. Send `Authorization: Bearer <tenant key>`.' }

/** The count of `pattern` in the output, once it has reached `count` (bounded wait). */
async function seen (server: ServerProcess, pattern: RegExp, count: number): Promise<number> {
  const deadline = Date.now() + 10_000
  const matches = (): number => server.output().match(new RegExp(pattern.source, 'g'))?.length ?? 0
  while (matches() < count && Date.now() < deadline) await sleep(25)
  return matches()
}

t.test('SIGHUP: the rewritten tenants file takes effect in the running process; a removed key gets 401; a bad file leaves the tenants', async (t) => {
  const upstream = await startTestSimulator(t)
  const acme = makeTenant('acme')
  const beta = makeTenant('beta')
  const dir = t.testdir({ v1: { 'tenants.json': JSON.stringify({ tenants: [acme.definition] }) }, v2: {}, v3: {} })
  await symlink('v1', join(dir, 'conf'))
  const port = await freePort()
  const server = startServerProcess(t, {
    PORT: String(port),
    HOST: '127.0.0.1',
    EVOLINK_API_KEY: TEST_UPSTREAM_KEY,
    EVOLINK_BASE_URL: upstream.url,
    TENANTS_FILE: 'conf/tenants.json',
    GATEWAY_SECRET: testGatewaySecret,
    LOG_LEVEL: 'info'
  }, {}, { cwd: dir })
  await server.waitFor(/Server listening/)
  const base = `http://127.0.0.1:${port}`
  t.equal((await usage(base, acme.authorization)).statusCode, 200, 'acme works')
  assertErrorResponse(t, await usage(base, beta.authorization), unauthorized)

  // The new file: beta added, acme removed. The swap is not seen by the watcher.
  await writeFile(join(dir, 'v2', 'tenants.json'), JSON.stringify({ tenants: [beta.definition] }))
  await symlink('v2', join(dir, 'conf.next'))
  await rename(join(dir, 'conf.next'), join(dir, 'conf'))
  // Longer than the watcher's debounce: had it reloaded, beta would work by now.
  await sleep(500)
  assertErrorResponse(t, await usage(base, beta.authorization), unauthorized)
  t.equal((await usage(base, acme.authorization)).statusCode, 200, 'without a signal, the running tenants stay')

  server.child.kill('SIGHUP')
  t.equal(await seen(server, /"msg":"tenants reloaded"/, 1), 1, 'reloaded once, on the signal')
  t.equal((await usage(base, beta.authorization)).statusCode, 200, 'the new tenant\'s key works')
  assertErrorResponse(t, await usage(base, acme.authorization), unauthorized)
  t.equal(server.child.exitCode, null, 'still running after SIGHUP')
  t.equal(server.child.signalCode, null)

  // A bad file on SIGHUP: logged, and the running tenants stay.
  await writeFile(join(dir, 'v3', 'tenants.json'), JSON.stringify({ tenants: [{ id: 'broken' }] }))
  await symlink('v3', join(dir, 'conf.next'))
  await rename(join(dir, 'conf.next'), join(dir, 'conf'))
  server.child.kill('SIGHUP')
  t.equal(await seen(server, /tenants reload failed, the running tenants stay: TENANTS_FILE: conf\/tenants\.json: tenants\[0\] must have required properties keys/, 1), 1, 'the reason is logged')
  t.equal((await usage(base, beta.authorization)).statusCode, 200, 'the running tenants stay')
  t.equal(server.child.exitCode, null, 'still running')

  server.child.kill('SIGTERM')
  t.equal(await server.exited, 0, 'and it still shuts down cleanly')
})
