import { spawnSync } from 'node:child_process'

/**
 * A command-line tool a deploy test needs (nginx, docker-compose, promtool):
 * its path, or a loud skip when it is not installed, unless
 * REQUIRE_DEPLOY_TOOLS=1 (set by .ci/run, which installs them), which turns a
 * missing tool into a failure, as REQUIRE_REDIS does for Redis.
 */
export function deployTool (name: string, versionArgs: string[] = ['--version']): { command: string } | { skip: string } {
  const found = spawnSync('sh', ['-c', 'command -v "$1"', 'sh', name], { encoding: 'utf8' })
  const command = found.stdout.trim()
  if (found.status === 0 && command !== '') {
    const probe = spawnSync(command, versionArgs, { encoding: 'utf8' })
    if (probe.error === undefined) return { command }
  }
  const message = `${name.toUpperCase()} NOT INSTALLED: this deploy check is SKIPPED. Install it (Debian: apt-get install ${name}).`
  if (process.env.REQUIRE_DEPLOY_TOOLS === '1') throw new Error(`${message} REQUIRE_DEPLOY_TOOLS=1 makes this a failure.`)
  process.stderr.write(`\n!!!!!!!! ${message}\n\n`)
  return { skip: message }
}
