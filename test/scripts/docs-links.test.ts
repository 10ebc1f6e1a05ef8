import t from 'tap'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('../../', import.meta.url))
const files = ['README.md', ...readdirSync(join(root, 'docs')).filter((name) => name.endsWith('.md')).map((name) => `docs/${name}`)]

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens. */
function anchorsOf (text: string): Set<string> {
  const anchors = new Set<string>()
  let fenced = false
  for (const line of text.split('\n')) {
    if (line.trimStart().startsWith('```')) fenced = !fenced
    const heading = fenced ? null : /^#{1,6} (.*)$/.exec(line)
    if (heading !== null) anchors.add((heading[1] ?? '').trim().toLowerCase().replace(/[^\p{L}\p{N}_\- ]/gu, '').replaceAll(' ', '-'))
  }
  return anchors
}

/** Markdown links outside code fences and code spans: `[text](target)`. */
function linksOf (text: string): string[] {
  const prose = text.replace(/```[\s\S]*?```/g, '').replace(/`[^`\n]*`/g, '')
  return [...prose.matchAll(/\]\(([^)\s]+)\)/g)].map((match) => match[1] ?? '')
}

t.test('every relative link and #anchor of README.md and docs/*.md resolves', async (t) => {
  for (const file of files) {
    for (const link of linksOf(readFileSync(join(root, file), 'utf8'))) {
      if (/^[a-z]+:/i.test(link)) continue // http(s), mailto: not checked offline
      const [path = '', anchor] = link.split('#')
      const target = path === '' ? join(root, file) : join(root, dirname(file), path)
      t.ok(existsSync(target), `${file}: ${link} names an existing file`)
      if (anchor !== undefined && target.endsWith('.md') && existsSync(target)) {
        t.ok(anchorsOf(readFileSync(target, 'utf8')).has(anchor), `${file}: #${anchor} is a heading of ${relative(root, target)}`)
      }
    }
  }
})
