import t from 'tap'
import type { LookupAddress } from 'node:dns'
import { addressProblem, destinationProblem, guardedLookup, parseDestinationPolicy, staticUrlProblem, type LookupFunction } from '../../src/http/destination.ts'

const strict = parseDestinationPolicy('')

/** A resolver with fixed answers (no network). */
function fakeLookup (answers: Record<string, string[]>): LookupFunction {
  return (hostname, _options, callback) => {
    const addresses = answers[hostname]
    if (addresses === undefined) {
      callback(Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' }), [])
      return
    }
    callback(null, addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 })))
  }
}

t.test('addresses that are not public unicast are refused', async (t) => {
  for (const address of ['127.0.0.1', '10.0.0.1', '172.16.5.4', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '::1', '::', 'fe80::1', 'fd00:ec2::254', '::ffff:127.0.0.1', '::ffff:10.0.0.1', '224.0.0.1']) {
    t.not(addressProblem(address, strict), null, address)
  }
  for (const address of ['93.184.216.34', '8.8.8.8', '2606:4700::1111', '::ffff:93.184.216.34']) {
    t.equal(addressProblem(address, strict), null, address)
  }
})

t.test('URLs refused before any DNS', async (t) => {
  const cases: Array<[string, string]> = [
    ['https://127.0.0.1/hook', 'is a loopback address, which the gateway does not call'],
    ['https://10.0.0.1/hook', 'is a private address, which the gateway does not call'],
    ['https://169.254.169.254/latest/meta-data', 'is a linkLocal address, which the gateway does not call'],
    ['https://[::1]/hook', 'is a loopback address, which the gateway does not call'],
    ['https://[::ffff:127.0.0.1]/hook', 'is a loopback address, which the gateway does not call'],
    ['https://2130706433/hook', 'is a loopback address, which the gateway does not call'],
    ['https://0x7f.1/hook', 'is a loopback address, which the gateway does not call'],
    ['https://user:pass@hooks.example.com/hook', 'must not contain credentials'],
    ['ftp://hooks.example.com/hook', 'must use https'],
    ['not a url', 'must be an absolute URL'],
    [`https://hooks.example.com/${'a'.repeat(2048)}`, 'must be at most 2048 characters']
  ]
  for (const [url, problem] of cases) t.equal(staticUrlProblem(url, strict), problem, url)
})

t.test('create-time check: every resolved address counts; http only to the allow-list', async (t) => {
  const lookup = fakeLookup({
    'hooks.example.com': ['93.184.216.34'],
    'internal.example.com': ['10.1.2.3'],
    'mixed.example.com': ['93.184.216.34', '127.0.0.1'],
    'mapped.example.com': ['::ffff:169.254.169.254'],
    localhost: ['127.0.0.1', '::1']
  })
  t.equal(await destinationProblem('https://hooks.example.com/hook', { policy: strict, lookup }), null)
  t.equal(await destinationProblem('http://hooks.example.com/hook', { policy: strict, lookup }), 'must use https')
  t.equal(await destinationProblem('https://internal.example.com/hook', { policy: strict, lookup }), 'resolves to a private address, which the gateway does not call')
  t.equal(await destinationProblem('https://mixed.example.com/hook', { policy: strict, lookup }), 'resolves to a loopback address, which the gateway does not call')
  t.equal(await destinationProblem('https://mapped.example.com/hook', { policy: strict, lookup }), 'resolves to a linkLocal address, which the gateway does not call')
  t.equal(await destinationProblem('https://localhost/hook', { policy: strict, lookup }), 'resolves to a loopback address, which the gateway does not call')
  t.equal(await destinationProblem('https://nowhere.example.com/hook', { policy: strict, lookup }), 'has a hostname that does not resolve')

  const allowing = parseDestinationPolicy('127.0.0.1/32, internal.example.com, 10.9.0.0/16')
  t.equal(await destinationProblem('http://127.0.0.1:8080/hook', { policy: allowing, lookup }), null, 'an allow-listed address, http included')
  t.equal(await destinationProblem('https://internal.example.com/hook', { policy: allowing, lookup }), null, 'an allow-listed hostname')
  t.equal(await destinationProblem('https://10.9.3.4/hook', { policy: allowing, lookup }), null, 'within an allow-listed range')
  t.equal(await destinationProblem('https://10.8.3.4/hook', { policy: allowing, lookup }), 'is a private address, which the gateway does not call', 'outside it')
  t.equal(await destinationProblem('https://[::1]/hook', { policy: allowing, lookup }), 'is a loopback address, which the gateway does not call', 'an IPv4 range does not allow IPv6 loopback')
  const silent: LookupFunction = () => {}
  t.equal(await destinationProblem('https://slow.example.com/hook', { policy: strict, lookup: silent, lookupTimeoutMs: 10 }), 'has a hostname that does not resolve', 'a resolver that never answers does not hold the create')
  t.throws(() => parseDestinationPolicy('10.0.0.0/99'), /WEBHOOK_ALLOWED_DESTINATIONS: "10.0.0.0\/99" is not a CIDR/)
})

t.test('the connect-time lookup refuses what the name resolves to now (DNS rebinding)', async (t) => {
  let answer = ['93.184.216.34']
  const lookup: LookupFunction = (_hostname, _options, callback) => { callback(null, answer.map((address) => ({ address, family: 4 }))) }
  const guarded = guardedLookup({ policy: strict, lookup })
  const resolve = async (options: { all?: boolean }): Promise<{ error: NodeJS.ErrnoException | null, address: string | LookupAddress[] }> =>
    await new Promise((resolve) => guarded('rebind.example.com', options, (error, address) => resolve({ error, address })))

  t.same(await resolve({ all: true }), { error: null, address: [{ address: '93.184.216.34', family: 4 }] })
  t.same(await resolve({}), { error: null, address: '93.184.216.34' })
  answer = ['127.0.0.1']
  const rebound = await resolve({ all: true })
  t.match(rebound.error, { code: 'EDESTINATIONREFUSED', message: 'webhook destination resolves to a loopback address, which the gateway does not call' })
  answer = ['93.184.216.34', '169.254.169.254']
  t.match((await resolve({})).error, { code: 'EDESTINATIONREFUSED' }, 'one refused address among several refuses the name')

  const allowByName = guardedLookup({ policy: parseDestinationPolicy('rebind.example.com'), lookup })
  const allowed = await new Promise<{ error: unknown }>((resolve) => allowByName('rebind.example.com', { all: true }, (error) => resolve({ error })))
  t.equal(allowed.error, null, 'an allow-listed hostname connects wherever it resolves')
})
