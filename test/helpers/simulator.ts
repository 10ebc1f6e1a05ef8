import { startSimulator, type StartedSimulator } from '../../src/simulator/start.ts'
import type { SimulatorOptions } from '../../src/simulator/types.ts'

/** The upstream key test simulators accept. */
export const TEST_UPSTREAM_KEY = 'sk-evo-test-upstream-key'

/**
 * Starts a simulator on 127.0.0.1, a free port, with TEST_UPSTREAM_KEY (unless
 * options say otherwise), and closes it when the test ends.
 */
export async function startTestSimulator (
  t: { teardown (fn: () => unknown): void },
  options: Partial<SimulatorOptions> = {}
): Promise<StartedSimulator> {
  const started = await startSimulator({ apiKey: TEST_UPSTREAM_KEY, ...options, host: '127.0.0.1', port: 0 })
  t.teardown(started.close)
  return started
}
