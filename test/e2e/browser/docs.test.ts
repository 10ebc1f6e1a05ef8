import t from 'tap'
import { makeTenant, startTestGateway } from '../../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'
import { launchChromium } from '../../helpers/browser.ts'

// The few browser globals the functions run in the page use (the project's types are Node's, not the DOM's).
interface PageElement { getBoundingClientRect (): { top: number }, textContent: string | null }
declare const document: { querySelector (selector: string): PageElement | null }
declare const window: { scrollY: number }

/**
 * Swagger UI at /docs in a real browser: what a new user sees first is the
 * operations, and the error table is one click away in the Schemas section.
 */
t.test('/docs in Chromium: the operations first, the error table under Schemas', async (t) => {
  const browser = await launchChromium(t)
  if ('skip' in browser) { t.comment(browser.skip); return }
  const upstream = await startTestSimulator(t)
  const { url } = await startTestGateway(t, { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [makeTenant('acme')] })
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } })
  t.teardown(() => page.close())
  await page.goto(`${url}/docs/`)
  await page.waitForSelector('.opblock')
  const top = await page.evaluate(() => (document.querySelector('.opblock')?.getBoundingClientRect().top ?? Infinity) + window.scrollY)
  t.comment(`first operation at ${Math.round(top)} px`)
  t.ok(top < 800, `the first operation is on the first screen (at ${Math.round(top)} px, the screen is 800 px high)`)
  t.notOk(await page.isVisible('.information-container table'), 'no table above the operations')

  // OpenAPI 3.1: Swagger UI's JSON Schema 2020-12 view, one accordion per schema.
  const model = page.locator('.models article', { has: page.locator('.json-schema-2020-12__title', { hasText: 'ErrorResponse' }) })
  await model.locator('.json-schema-2020-12-accordion').click()
  await model.locator('table').first().waitFor()
  const text = await model.textContent() ?? ''
  t.match(text, /Every non-2xx answer has this body/)
  t.match(text, /rate_limit_exceeded[\s\S]*internal_error/, 'the table lists the codes')
})
