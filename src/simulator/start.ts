import type { AddressInfo } from 'node:net'
import { buildSimulator } from './app.ts'
import type { SimulatorInstance, SimulatorOptions } from './types.ts'
import { httpUrl } from '../http/url.ts'

export type StartSimulatorOptions = SimulatorOptions & { host?: string, port?: number }

export interface StartedSimulator {
  /** Base URL, e.g. http://127.0.0.1:40123 (no trailing slash). */
  url: string
  apiKey: string
  simulator: SimulatorInstance
  /** Closes the server (idempotent; releases hung responses). Safe to pass around unbound. */
  close (): Promise<void>
}

function urlOf (address: AddressInfo): string {
  const host = address.address === '0.0.0.0' ? '127.0.0.1' : address.address === '::' ? '::1' : address.address
  return httpUrl(host, address.port)
}

/** Builds a simulator and listens (default 127.0.0.1, a free port). */
export async function startSimulator (options: StartSimulatorOptions): Promise<StartedSimulator> {
  const { host = '127.0.0.1', port = 0, ...simulatorOptions } = options
  const simulator = await buildSimulator(simulatorOptions)
  try {
    await simulator.app.listen({ host, port })
  } catch (error) {
    await simulator.app.close()
    throw error
  }
  const url = urlOf(simulator.app.server.address() as AddressInfo)
  let closing: Promise<void> | undefined
  const close = (): Promise<void> => {
    closing ??= simulator.app.close()
    return closing
  }
  return { url, apiKey: options.apiKey, simulator, close }
}
