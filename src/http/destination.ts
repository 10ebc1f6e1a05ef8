import { lookup as dnsLookup, type LookupAddress } from 'node:dns'
import { isIP } from 'node:net'
import ipaddr from 'ipaddr.js'

/**
 * Where a tenant's webhook may go (SSRF rules). A destination is refused when
 * any address it resolves to is not public unicast (loopback, private,
 * link-local and so the cloud metadata address, CGNAT, unique-local,
 * multicast, reserved…), unless the operator allow-listed it by hostname or
 * CIDR. The rules apply to the address actually connected to (see
 * `guardedLookup`), not only to the name checked at create time, so a name
 * that re-resolves to 127.0.0.1 later (DNS rebinding) is still refused.
 */
export interface DestinationPolicy {
  /** lower-case hostnames allowed whatever they resolve to */
  hosts: ReadonlySet<string>
  /** address ranges allowed although not public */
  ranges: ReadonlyArray<[ipaddr.IPv4 | ipaddr.IPv6, number]>
}

export type LookupFunction = (hostname: string, options: { all: true }, callback: (error: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void) => void

export class DestinationError extends Error {
  override name = 'DestinationError'
}

/** WEBHOOK_ALLOWED_DESTINATIONS: hostnames and CIDRs, comma-separated. */
export function parseDestinationPolicy (value: string, variable = 'WEBHOOK_ALLOWED_DESTINATIONS'): DestinationPolicy {
  const hosts = new Set<string>()
  const ranges: Array<[ipaddr.IPv4 | ipaddr.IPv6, number]> = []
  for (const entry of value.split(',').map((part) => part.trim().toLowerCase()).filter(Boolean)) {
    if (entry.includes('/')) {
      try {
        ranges.push(ipaddr.parseCIDR(entry))
      } catch {
        throw new Error(`${variable}: "${entry}" is not a CIDR`)
      }
    } else if (ipaddr.isValid(entry)) {
      const address = ipaddr.parse(entry)
      ranges.push([address, address.kind() === 'ipv4' ? 32 : 128])
    } else {
      hosts.add(entry)
    }
  }
  return { hosts, ranges }
}

/** An IPv4-mapped IPv6 address (::ffff:127.0.0.1) is judged as the IPv4 address it carries. */
function normalise (address: string): ipaddr.IPv4 | ipaddr.IPv6 {
  const parsed = ipaddr.parse(address)
  return parsed.kind() === 'ipv6' && (parsed as ipaddr.IPv6).isIPv4MappedAddress() ? (parsed as ipaddr.IPv6).toIPv4Address() : parsed
}

function inAllowedRange (address: ipaddr.IPv4 | ipaddr.IPv6, policy: DestinationPolicy): boolean {
  return policy.ranges.some(([network, bits]) => network.kind() === address.kind() && address.match(network, bits))
}

/** Why the address may not be called, or null when it may. */
export function addressProblem (address: string, policy: DestinationPolicy): string | null {
  let parsed: ipaddr.IPv4 | ipaddr.IPv6
  try {
    parsed = normalise(address)
  } catch {
    return 'is not an IP address'
  }
  const range = parsed.range()
  if (range === 'unicast' || inAllowedRange(parsed, policy)) return null
  return `resolves to a ${range} address, which the gateway does not call`
}

function bareHostname (url: URL): string {
  return url.hostname.replace(/^\[|\]$/g, '').toLowerCase()
}

/** Checks that need no DNS: length, scheme, credentials, and an address written in the URL. */
export function staticUrlProblem (value: string, policy: DestinationPolicy): string | null {
  if (value.length > 2048) return 'must be at most 2048 characters'
  let url: URL
  try {
    url = new URL(value)
  } catch {
    return 'must be an absolute URL'
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return 'must use https'
  if (url.username !== '' || url.password !== '') return 'must not contain credentials'
  // WHATWG parsing has already turned 2130706433, 0x7f.1 and the like into 127.0.0.1.
  const host = bareHostname(url)
  if (isIP(host) !== 0) {
    const problem = addressProblem(host, policy)
    if (problem !== null) return problem.replace('resolves to', 'is')
  }
  return null
}

/**
 * The whole check at create time: the static rules, then every address the
 * hostname resolves to now. Plain http is accepted only to the allow-list
 * (a listed hostname, or addresses all within listed ranges): the tests' and
 * the simulator mode's loopback receivers.
 */
export async function destinationProblem (value: string, options: { policy: DestinationPolicy, lookup?: LookupFunction, lookupTimeoutMs?: number }): Promise<string | null> {
  const { policy } = options
  const problem = staticUrlProblem(value, policy)
  if (problem !== null) return problem
  const url = new URL(value)
  const host = bareHostname(url)
  if (policy.hosts.has(host)) return null
  let addresses: string[]
  if (isIP(host) !== 0) {
    addresses = [host]
  } else {
    try {
      addresses = (await lookupAll(options.lookup ?? (dnsLookup as unknown as LookupFunction), host, options.lookupTimeoutMs ?? 5000)).map(({ address }) => address)
    } catch {
      return 'has a hostname that does not resolve'
    }
  }
  for (const address of addresses) {
    const refused = addressProblem(address, policy)
    if (refused !== null) return refused
  }
  if (url.protocol === 'http:' && !addresses.every((address) => inAllowedRange(normalise(address), policy))) return 'must use https'
  return null
}

/** A create must not wait on a slow resolver for long: past the deadline the name counts as unresolvable. */
async function lookupAll (lookup: LookupFunction, hostname: string, timeoutMs: number): Promise<LookupAddress[]> {
  return await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('DNS lookup timed out')), timeoutMs)
    lookup(hostname, { all: true }, (error, addresses) => {
      clearTimeout(timer)
      if (error === null) resolve(addresses)
      else reject(error)
    })
  })
}

type ConnectLookupCallback = (error: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void

/**
 * A `lookup` for net/tls connect (through undici's `connect` option): resolves
 * as usual and fails the connection if any address is refused, so that the
 * check applies to the addresses the socket will use. Hostnames on the
 * allow-list are resolved without the check.
 */
export function guardedLookup (options: { policy: DestinationPolicy, lookup?: LookupFunction, what?: string }) {
  const what = options.what ?? 'webhook destination'
  const lookup = options.lookup ?? (dnsLookup as unknown as LookupFunction)
  return function guardedDnsLookup (hostname: string, lookupOptions: { all?: boolean, family?: number }, callback: ConnectLookupCallback): void {
    lookup(hostname, { all: true }, (error, addresses) => {
      if (error !== null) { callback(error, []); return }
      const allowListed = options.policy.hosts.has(hostname.toLowerCase())
      const usable = addresses.filter(({ family }) => lookupOptions.family === undefined || lookupOptions.family === 0 || family === lookupOptions.family)
      if (!allowListed) {
        for (const { address } of usable) {
          const refused = addressProblem(address, options.policy)
          if (refused !== null) { callback(Object.assign(new DestinationError(`${what} ${refused}`), { code: 'EDESTINATIONREFUSED' }), []); return }
        }
      }
      if (usable.length === 0) { callback(Object.assign(new Error(`no address for ${hostname}`), { code: 'ENOTFOUND' }), []); return }
      if (lookupOptions.all === true) callback(null, usable)
      else callback(null, usable[0]!.address, usable[0]!.family)
    })
  }
}
