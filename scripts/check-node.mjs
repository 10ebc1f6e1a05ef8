// Plain JavaScript on purpose: it runs before `node src/server.ts` (npm's prestart and pretest),
// on whatever Node.js the machine has, so that an old one gets one clear line instead of
// ERR_UNKNOWN_FILE_EXTENSION ".ts". Keep in step with package.json's "engines".
import { pathToFileURL } from 'node:url'

export const requirement = 'Node.js 22.19+ or 24'

/** Whether a Node.js version ("22.19.0" or "v22.19.0") can run the gateway (type stripping on by default). */
export function isSupported (version) {
  const [major, minor] = version.replace(/^v/, '').split('.').map(Number)
  return major >= 24 || (major === 22 && minor >= 19)
}

export function message (version) {
  return `video-gateway needs ${requirement} (this is ${version}): install it, e.g. \`nvm install 24\``
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  if (!isSupported(process.version)) {
    process.stderr.write(`${message(process.version)}\n`)
    process.exit(1)
  }
}
