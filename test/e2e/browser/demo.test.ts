import { mkdirSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { buildTestApp, makeTenant, startTestGateway } from '../../helpers/gateway.ts'
import { startTestSimulator, TEST_UPSTREAM_KEY } from '../../helpers/simulator.ts'
import { launchChromium } from '../../helpers/browser.ts'

const artifacts = new URL('../../artifacts/', import.meta.url)

// The few browser globals the functions run in the page use (the project's types are Node's, not the DOM's).
interface PageVideo { error: unknown, readyState: number, videoWidth: number, currentSrc: string, duration: number }
declare const document: { getElementById (id: string): ({ textContent: string | null } & Partial<PageVideo>) | null }

/**
 * The demo page in a real browser (Debian's headless Chromium) against a real
 * gateway on loopback, talking to the real simulator: the whole loop a person
 * sees, from the prompt to the video playing.
 */
t.test('the demo page in Chromium', async (t) => {
  const browser = await launchChromium(t)
  if ('skip' in browser) { t.comment(browser.skip); return }
  const upstream = await startTestSimulator(t, { taskDurationMs: 1500 })
  const demo = makeTenant('demo')
  const options = { upstreamUrl: upstream.url, upstreamKey: TEST_UPSTREAM_KEY, tenants: [demo], demoTenantId: demo.id, config: { taskStatusTtlMs: 100 } }
  const { url } = await startTestGateway(t, options)

  t.test('a generation runs from the prompt to a playing video', async (t) => {
    const page = await browser.newPage()
    t.teardown(() => page.close())
    const consoleErrors: string[] = []
    page.on('console', (line) => { if (line.type() === 'error') consoleErrors.push(line.text()) })
    await page.goto(`${url}/demo`)
    t.equal(await page.title(), 'video-gateway demo')
    await page.fill('#prompt', 'A lighthouse at dawn, waves below')
    await page.selectOption('#duration', '6')
    await page.selectOption('#quality', '1080p')
    await page.click('#generate')
    await page.waitForSelector('#progress-section:not([hidden])')
    // The task is followed live: its status moves through processing to completed.
    await page.waitForFunction(() => document.getElementById('status')?.textContent === 'completed', undefined, { timeout: 15_000 })
    t.equal(await page.textContent('#percent'), '100%')
    // The video element got the result and the browser decoded it: a playable source.
    const playable = await page.waitForFunction(() => {
      const video = document.getElementById('video') as PageVideo
      return video.error === null && video.readyState >= 2 && video.videoWidth > 0 ? { src: video.currentSrc, width: video.videoWidth, duration: video.duration } : false
    }, undefined, { timeout: 10_000 })
    const source = await playable.jsonValue() as { src: string, width: number, duration: number }
    t.match(source.src, new RegExp(`^${upstream.url}/files/task-unified-.+-0\\.mp4$`))
    t.equal(source.width, 240)
    t.ok(source.duration > 1.5 && source.duration < 2.5, 'the 2-second sample video')
    t.equal(await page.textContent('#message'), 'Done: the video is playing below.')
    t.match(await page.textContent('#task-id') ?? '', /^task-unified-.+\.[\w-]{22}$/, 'the tenant-scoped id (signed for this tenant)')
    mkdirSync(artifacts, { recursive: true })
    await page.screenshot({ path: new URL('demo-finished.png', artifacts).pathname, fullPage: true })
    t.same(consoleErrors, [], 'no errors in the page')
  })

  t.test('an expired token shows a clear message', async (t) => {
    // The same gateway secret, a clock three hours back: a token this gateway issued, long expired.
    const past = await buildTestApp(t, { ...options, seams: { clock: () => Date.now() - 3 * 3_600_000 } })
    const { token, grant } = await past.browserTokens.mint({ tenantId: demo.id, ttlSeconds: 600, claims: { operations: ['create', 'read'], maxCreates: null, models: null, qualities: null, maxDuration: null, endUser: null, origin: null } })
    const page = await browser.newPage()
    t.teardown(() => page.close())
    await page.route('**/demo/token', (route) => route.fulfill({ json: { token, token_type: 'Bearer', expires_at: grant.expiresAt, expires_in: 600 } }))
    await page.goto(`${url}/demo`)
    await page.click('#generate')
    await page.waitForSelector('#message:not([hidden])')
    const shown = await page.textContent('#message')
    t.match(shown, /^Your session token has expired\. Press Generate again for a new one\. \(The token expired at \d{4}-\d\d-\d\dT[\d:.]+Z; get a new one\.\)$/)
    t.equal(await page.isHidden('#progress-section'), true, 'nothing was created')
    await page.unroute('**/demo/token')
    await page.click('#generate')
    await page.waitForSelector('#progress-section:not([hidden])')
    t.pass('the next Generate gets a fresh token and starts')
  })

  t.test('a page on an origin the tenant does not allow is refused by CORS', async (t) => {
    const foreign = createServer((_request, response) => {
      response.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>elsewhere</title>')
    })
    await new Promise<void>((resolve) => foreign.listen(0, '127.0.0.1', resolve))
    t.teardown(() => new Promise((resolve) => foreign.close(resolve)))
    const page = await browser.newPage()
    t.teardown(() => page.close())
    await page.goto(`http://127.0.0.1:${(foreign.address() as AddressInfo).port}/`)
    const outcome = await page.evaluate(async (gateway) => {
      const attempt = async (path: string, init: RequestInit): Promise<string> => {
        try {
          const response = await fetch(gateway + path, init)
          return `answered ${response.status}`
        } catch (error) {
          return `refused: ${(error as Error).name}`
        }
      }
      return {
        token: await attempt('/demo/token', { method: 'POST' }),
        create: await attempt('/v1/videos/generations', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
      }
    }, url)
    t.same(outcome, { token: 'refused: TypeError', create: 'refused: TypeError' }, 'the browser blocks both: no CORS grant for this origin')
  })
})
