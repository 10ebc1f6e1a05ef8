import type { AddressInfo, Server } from 'node:net'

/**
 * How the bench's own servers (fixed-upstream, baseline-proxy) talk to
 * run.ts: the first stdout line is `{"port":N}`, and they exit when their
 * stdin closes, so they die with the bench even if it is killed with -9.
 */
export function announcePort (server: Server): void {
  process.stdout.write(JSON.stringify({ port: (server.address() as AddressInfo).port }) + '\n')
}

export function exitWithParent (close: () => unknown): void {
  const quit = (): void => {
    Promise.resolve(close()).finally(() => process.exit(0))
    setTimeout(() => process.exit(0), 1000).unref()
  }
  process.stdin.on('end', quit)
  process.stdin.on('error', quit)
  process.stdin.resume()
  process.once('SIGTERM', quit)
  process.once('SIGINT', quit)
}
