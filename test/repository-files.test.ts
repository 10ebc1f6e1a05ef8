import t from 'tap'
import { existsSync, readFileSync } from 'node:fs'

const root = new URL('../', import.meta.url)
const read = (name: string): string => readFileSync(new URL(name, root), 'utf8')

t.test('LICENSE, CHANGELOG.md and SECURITY.md exist', async (t) => {
  for (const name of ['LICENSE', 'CHANGELOG.md', 'SECURITY.md']) t.ok(existsSync(new URL(name, root)), name)
})

t.test("package.json's license is the one LICENSE holds", async (t) => {
  const { license } = JSON.parse(read('package.json')) as { license: string }
  t.equal(license, 'MIT')
  const text = read('LICENSE')
  t.match(text, /^MIT License\n/, 'LICENSE starts with the MIT title')
  t.match(text, /Permission is hereby granted, free of charge/, 'the MIT grant')
  t.match(text, /Copyright \(c\) \d{4} video-gateway contributors/)
})

t.test('CHANGELOG.md follows Keep a Changelog: Unreleased, then the package version', async (t) => {
  const { version } = JSON.parse(read('package.json')) as { version: string }
  const changelog = read('CHANGELOG.md')
  t.match(changelog, /keepachangelog\.com/)
  const releases = [...changelog.matchAll(/^## \[([^\]]+)\]/gm)].map((match) => match[1])
  t.equal(releases[0], 'Unreleased')
  t.ok(releases.includes(version), `an entry for ${version}`)
})

t.test('SECURITY.md says how to report privately and what is in scope', async (t) => {
  const security = read('SECURITY.md')
  t.match(security, /privately/i)
  for (const topic of [/key leakage/i, /tenant isolation/i, /SSRF/]) t.match(security, topic)
  t.match(security, /within \*\*\d+ working days\*\*/)
})
