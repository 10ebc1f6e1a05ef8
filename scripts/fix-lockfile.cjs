// Adds lock entries for off-platform napi-rs bindings (os/cpu/libc from the
// package name) that this machine's registry mirror cannot serve (404), so
// `npm ci` stops failing with "Missing: @unrs/resolver-binding-...@ from lock file"
// (npm/cli#4828). Additive only. Usage: npm run fix-lockfile (after any npm install that rewrote the lock)
const fs = require('node:fs')
const file = process.argv[2] ?? 'package-lock.json'
const lock = JSON.parse(fs.readFileSync(file, 'utf8'))
const p = lock.packages
let added = 0
for (const entry of Object.values(p)) {
  for (const [name, version] of Object.entries(entry.optionalDependencies ?? {})) {
    const key = 'node_modules/' + name
    if (p[key] || !/^@unrs\/resolver-binding-/.test(name)) continue
    const [os, cpu, abi] = name.replace('@unrs/resolver-binding-', '').split('-')
    if (!os || !cpu || cpu === 'wasi') continue
    const e = { version, cpu: [cpu] }
    if (entry.dev) e.dev = true
    if (/^gnu/.test(abi ?? '')) e.libc = ['glibc']
    if (/^musl/.test(abi ?? '')) e.libc = ['musl']
    Object.assign(e, { license: 'MIT', optional: true, os: [os] })
    p[key] = e
    added++
  }
}
const sorted = {}
for (const k of Object.keys(p).sort((a, b) => a === '' ? -1 : b === '' ? 1 : a.localeCompare(b, 'en'))) sorted[k] = p[k]
lock.packages = sorted
fs.writeFileSync(file, JSON.stringify(lock, null, 2) + '\n')
console.log(`added ${added} entries to ${file}`)
