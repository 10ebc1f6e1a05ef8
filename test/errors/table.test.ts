import t from 'tap'
import { readFileSync } from 'node:fs'
import { errorTable, gatewayError, isGatewayError, type ErrorCode } from '../../src/errors/table.ts'
import { buildTestApp, makeTenant } from '../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../helpers/simulator.ts'

const codes = Object.keys(errorTable) as ErrorCode[]

t.test('every row of the error table is documented in docs/errors.md and in /openapi.json', async (t) => {
  const readme = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8')
  const upstream = await startTestSimulator(t)
  const app = await buildTestApp(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [makeTenant('acme')] })
  const openapi = JSON.stringify((await app.inject({ method: 'GET', url: '/openapi.json' })).json())
  for (const code of codes) {
    const row = errorTable[code]
    t.match(readme, new RegExp(`\\|\\s*${row.statusCode}\\s*\\|\\s*\`${code}\`\\s*\\|\\s*${row.type}\\s*\\|`), `docs/errors.md row for ${code}`)
    t.match(openapi, `\`${code}\``, `/openapi.json mentions ${code}`)
  }
})

t.test('the table is consistent', async (t) => {
  for (const code of codes) {
    const row = errorTable[code]
    t.ok(row.statusCode >= 400 && row.statusCode < 600, `${code} status`)
    t.match(row.type, /^(invalid_request_error|authentication_error|permission_error|rate_limit_error|upstream_error|api_error)$/, `${code} type`)
    t.ok(row.description.length > 10, `${code} described`)
  }
})

t.test('gatewayError builds the row, with its options', async (t) => {
  const cause = new Error('socket hang up')
  const error = gatewayError('invalid_request', { args: ['Bad thing.'], param: 'prompt', cause })
  t.ok(isGatewayError(error))
  t.ok(error instanceof Error)
  t.match(error, { statusCode: 400, tableCode: 'invalid_request', publicCode: 'invalid_request', message: 'Bad thing.', param: 'prompt', cause })
  const upstream = gatewayError('upstream_invalid_request', { args: ['x'], publicCode: 'content_policy_violation', headers: { 'retry-after': '1' } })
  t.match(upstream, { publicCode: 'content_policy_violation', tableCode: 'upstream_invalid_request', headers: { 'retry-after': '1' } })
  t.equal(gatewayError('invalid_request').publicCode, 'invalid_request', 'the prototype default survives another instance overriding it')
  t.equal(gatewayError('upstream_timeout', { args: [1500] }).message, 'The video provider did not answer within 1500 ms.')
  t.notOk(isGatewayError(new Error('x')))
  t.notOk(isGatewayError(null))
})
