import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { isSupported, message } from '../../scripts/check-node.mjs'

const root = join(import.meta.dirname, '..', '..')
const preflight = join(root, 'scripts', 'check-node.mjs')
// Debian's Node.js 20, the machine default a new user meets; skipped loudly where absent.
const oldNode = '/usr/bin/node'
const oldNodeVersion = existsSync(oldNode) ? spawnSync(oldNode, ['--version'], { encoding: 'utf8' }).stdout.trim() : ''
const haveOldNode = oldNodeVersion !== '' && !isSupported(oldNodeVersion)

t.test('the supported range is package.json engines: ^22.19.0 || >=24', async t => {
  for (const version of ['v22.19.0', 'v22.20.1', 'v24.0.0', 'v25.1.0']) t.equal(isSupported(version), true, version)
  for (const version of ['v20.20.2', 'v22.18.0', 'v23.11.0', 'v18.0.0']) t.equal(isSupported(version), false, version)
})

t.test('the running Node.js passes the preflight silently', async t => {
  const run = spawnSync(process.execPath, [preflight], { encoding: 'utf8' })
  t.equal(run.status, 0)
  t.equal(run.stderr, '')
  t.equal(run.stdout, '')
})

t.test('Node.js 20 gets one clear line and exit code 1', { skip: haveOldNode ? false : `no old Node.js at ${oldNode}` }, async t => {
  const run = spawnSync(oldNode, [preflight], { encoding: 'utf8' })
  t.equal(run.status, 1)
  t.equal(run.stderr, `video-gateway needs Node.js 22.19+ or 24 (this is ${oldNodeVersion}): install it, e.g. \`nvm install 24\`\n`)
  t.equal(run.stderr, `${message(oldNodeVersion)}\n`)
  t.equal(run.stdout, '')
})

const oldNpm = '/usr/bin/npm'
const oldEnv = { ...process.env, PATH: '/usr/bin:/bin', npm_config_update_notifier: 'false' }

t.test('npm start on Node.js 20 stops at the preflight (prestart), before node src/server.ts', { skip: haveOldNode && existsSync(oldNpm) ? false : 'no old Node.js/npm in /usr/bin' }, async t => {
  const run = spawnSync(oldNpm, ['start'], { cwd: root, encoding: 'utf8', env: oldEnv })
  t.not(run.status, 0)
  t.match(run.stderr, `video-gateway needs Node.js 22.19+ or 24 (this is ${oldNodeVersion})`)
  t.notMatch(run.stderr + run.stdout, 'ERR_UNKNOWN_FILE_EXTENSION')
})

t.test('npm install on Node.js 20 fails at once with EBADENGINE (.npmrc engine-strict)', { skip: haveOldNode && existsSync(oldNpm) ? false : 'no old Node.js/npm in /usr/bin' }, async t => {
  // --dry-run --offline: the engine check comes first; nothing is fetched or written.
  const run = spawnSync(oldNpm, ['install', '--dry-run', '--offline', '--no-audit', '--no-fund'], { cwd: root, encoding: 'utf8', env: oldEnv })
  t.not(run.status, 0)
  t.match(run.stderr, 'npm error code EBADENGINE')
  t.match(run.stderr, 'Required: {"node":"^22.19.0 || >=24.0.0"}')
})
