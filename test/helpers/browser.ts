import { existsSync } from 'node:fs'
import { chromium, type Browser } from 'playwright-core'

/** Debian's chromium (`apt-get install chromium`); .ci/run installs it when missing. */
export const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'

/**
 * Headless Chromium for the browser tests, closed at teardown. Without it the
 * tests skip LOUDLY outside CI; in CI (CI=true) a missing browser is a failure.
 */
export async function launchChromium (t: { teardown (fn: () => unknown): void }): Promise<Browser | { skip: string }> {
  if (!existsSync(chromiumPath)) {
    const message = `CHROMIUM NOT FOUND at ${chromiumPath}: the browser tests are SKIPPED. Install it with \`apt-get install chromium\` (or set CHROMIUM_PATH).`
    if (process.env.CI === 'true') throw new Error(`${message} CI=true makes this a failure.`)
    process.stderr.write(`\n!!!!!!!! ${message}\n\n`)
    return { skip: message }
  }
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--autoplay-policy=no-user-gesture-required']
  })
  t.teardown(() => browser.close())
  return browser
}
